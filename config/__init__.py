"""Project configuration: settings, URLs, WSGI/ASGI entry points and logging setup."""
