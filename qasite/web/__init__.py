"""The live pages: HTML shells, their scripts and styles, the built browser client."""
