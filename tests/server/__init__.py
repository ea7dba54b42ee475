"""The team server (app/team): sign-in, request checks, metrics, shared caches, jobs, gunicorn."""
