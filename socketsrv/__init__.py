"""Herald's socket fleet: websocket workers that fan publications out to browsers."""
