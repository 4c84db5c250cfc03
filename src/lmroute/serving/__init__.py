"""Serving routers behind an OpenAI-compatible API.

``protocol`` (request/response models), ``model_name`` (``router-<name>-<threshold>``), ``config``
(upstream and server settings), ``upstreams`` (async OpenAI SDK calls with retries, timeouts and
fallback), ``batcher`` (micro-batched scoring in a thread pool), ``service`` (routing + upstream
calls, no HTTP), ``streaming`` (SSE relay), ``metrics`` (Prometheus), ``app`` (the FastAPI factory),
``chat`` (the terminal chat). Nothing here is imported by ``import lmroute``.
"""
