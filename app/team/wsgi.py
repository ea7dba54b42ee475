"""WSGI entry point for production serving: ``gunicorn 'app.team.wsgi:server'``.

What is served comes from the environment (:func:`app.team.config.server_config_from_env`):
``ATTENTION_FLOWS_SERVER_CONFIG`` (a server config listing several pairs) or ``ATTENTION_FLOWS_CONFIG`` (one pair,
default ``default``), with ``ATTENTION_FLOWS_REDIS`` / ``ATTENTION_FLOWS_BROKER`` overriding its Redis cache and
Celery broker. Each gunicorn worker loads the default pair once, in a background thread (``/healthz`` answers 503
until it is loaded), and the other pairs on first use.
"""

from app.team.config import server_config_from_env
from app.team.site import create_app

server = create_app(server_config_from_env()).server
