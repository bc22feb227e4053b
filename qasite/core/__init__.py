"""Settings, secrets and tokens, passwords, the database, mail and metrics of the Q&A site."""
