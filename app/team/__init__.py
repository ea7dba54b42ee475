"""The team server: sign-in, request checks, metrics, server config, background jobs, app factory, wsgi, worker."""
