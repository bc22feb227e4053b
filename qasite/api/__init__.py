"""The HTTP API: routers per resource, shared dependencies, schemas, error answers."""
