"""The live pages: HTML shells, their scripts and styles, and the built browser client (pages.py)."""
