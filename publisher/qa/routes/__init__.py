"""One router per resource; :func:`publisher.qa.app.create_app` includes them all."""
