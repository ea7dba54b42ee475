"""Helpers for tests and benchmarks that drive a real server (as ``dash.testing`` does): a free port and the wait
until a server is ready (:mod:`app.testing.servers`), a throwaway Redis (:mod:`app.testing.localredis`), Dash
callbacks over HTTP (:mod:`app.testing.dash_http`)."""
