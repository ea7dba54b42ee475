"""The Celery app of ``attention-flows worker``: ``celery -A app.team.worker:celery_app worker``.

It builds the same Dash app as the web server (:mod:`app.team.wsgi`), from the same environment, so its background
callbacks are registered as this Celery app's tasks, and the jobs find the configured pairs in its registry (each
loaded on first use, like a web worker's). Corpus chunks (``corpus run --broker``) run here too. A worker runs one
job at a time (``--pool solo``); start more workers, on this or other machines, for more jobs at once.
"""

from app.team.config import server_config_from_env
from app.team.corpus_tasks import register_corpus_task
from app.team.jobs import install_heartbeat
from app.team.site import create_app

_config = server_config_from_env()
if not _config.jobs.broker:
    raise SystemExit("attention-flows worker needs a broker: --broker redis://HOST:PORT/DB (or ATTENTION_FLOWS_BROKER)")
dash_app = create_app(_config)
celery_app = dash_app._background_manager.handle
install_heartbeat(celery_app)
register_corpus_task(celery_app)  # `corpus run --broker …` sends its chunks here
