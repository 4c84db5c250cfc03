"""Serving routers behind an OpenAI-compatible API.

``protocol`` (request/response models), ``config`` (server settings and the strong and weak
upstreams), ``batcher`` (micro-batched scoring in a thread pool), ``service`` (routing + upstream
calls, no HTTP), ``streaming`` (SSE relay), ``metrics`` (Prometheus), ``routes`` (the HTTP routes,
Starlette ``Route`` objects), ``errors`` (OpenAI-shaped error responses), ``middleware`` (the
request count), ``app`` (the Starlette app's factory and ``serve``), ``chat`` (the terminal chat). Model
names are parsed by :mod:`lmroute.routing_names`, upstreams called through :mod:`lmroute.upstream`.
Nothing here is imported by ``import lmroute``.
"""
