"""WSGI entry point for production serving: ``gunicorn 'app.team.wsgi:server'``.

What is served comes from the environment (:func:`app.team.config.server_config_from_env`):
``ATTENTION_FLOWS_SERVER_CONFIG`` (a server config listing several pairs) or ``ATTENTION_FLOWS_CONFIG`` (one pair,
default ``default``), with ``ATTENTION_FLOWS_REDIS`` / ``ATTENTION_FLOWS_BROKER`` overriding its Redis cache and
Celery broker.

With ``serve --workers N`` gunicorn imports this module once, in its master (``--preload``): the default pair is
loaded and warmed up here, before the workers are forked, so every worker shares its weights copy-on-write and a
worker that dies is replaced by one that answers at once. Imported by each worker instead (no ``--preload``), each
loads the default pair in a background thread (``/healthz`` answers 503 until it is loaded). Other pairs load on
first use, in the worker that needs them.
"""

import gc

from app.service.registry import pair_registry
from app.team.config import server_config_from_env
from app.team.gunicorn_hooks import preloading
from app.team.site import create_app

server = create_app(server_config_from_env()).server

if preloading():
    pair_registry(server).loader().settle()  # loaded and warmed up: no thread or lock is busy at the fork
    gc.collect()
    gc.freeze()  # what is loaded now is never scanned again: the workers' collections leave these pages shared
