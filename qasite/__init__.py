"""The Q&A site: a small FastAPI backend and its live pages; every visible write is published.

Grouped the way FastAPI's full-stack template groups an app (docs/architecture.md):

* :mod:`qasite.core`: settings, secrets and tokens, passwords, database, mail, metrics;
* :mod:`qasite.domain`: tables, the rules of posts, votes and inbox, events, the outbox and
  its relay, search, Markdown rendering, image checks: no HTTP in here;
* :mod:`qasite.api`: routers per resource, dependencies, request/response schemas, and the
  one place domain errors become HTTP answers;
* :mod:`qasite.web`: the live pages (templates, scripts, styles);
* ``migrations/`` (Alembic) and :mod:`qasite.seed` (seed data);
* :mod:`qasite.main`: ``create_app(settings)``.

It publishes through :mod:`publisher` (or any object with the bus's ``publish``) and never
imports the socket fleet: running both in one process is :mod:`launch`'s job.
"""
