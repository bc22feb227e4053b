"""One router per resource; :func:`qasite.main.create_app` includes them all."""
