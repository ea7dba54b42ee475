"""WSGI entry point for production serving: ``gunicorn 'app.wsgi:server'``.

The pair comes from ``ATTENTION_FLOWS_CONFIG`` (a name under configs/ or a path; default ``default``). Each
gunicorn worker loads the models once, in a background thread (``/healthz`` answers 503 until they are loaded),
and keeps its own cache; workers share nothing.
"""

import os

from app.main import create_app

server = create_app(os.environ.get("ATTENTION_FLOWS_CONFIG", "default")).server
