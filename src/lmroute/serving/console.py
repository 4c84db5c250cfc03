"""The web console: ``GET /ui`` and its static files, shipped inside the package (no build step, no CDN).

The page is static: it holds no API key, upstream address or other server setting. Everything it
shows it fetches like any client does (``/metrics``, ``/v1/models``, ``/v1/route``,
``/v1/chat/completions``), with the key the user types when the server asks for one. The responses
carry a strict Content-Security-Policy: the page loads only its own files and talks only to its origin.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from lmroute.exceptions import RequestError

UI_PATH = "/ui"
#: The console's files by name, with their media types; nothing else under /ui is served.
_FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "live.js": "text/javascript; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "prometheus.js": "text/javascript; charset=utf-8",
    "report.js": "text/javascript; charset=utf-8",
}
_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # Revalidate: an upgraded server must not run an old cached script against its new API.
    "cache-control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return (resources.files("lmroute.serving") / "static" / name).read_bytes()


def _file(name: str) -> Response:
    return Response(_read(name), media_type=_FILES[name], headers=_HEADERS)


async def console_page(request: Request) -> Response:
    """The console's page."""
    return _file("index.html")


async def console_slash(request: Request) -> Response:
    # The page's links are relative to /ui (so it also works under a proxy's path prefix).
    return RedirectResponse("../ui", status_code=308)


async def console_file(request: Request) -> Response:
    """One of the console's static files."""
    name = request.path_params["name"]
    if name == "index.html":  # the page itself, whose links resolve only from /ui
        return RedirectResponse("../ui", status_code=308)
    if name not in _FILES:
        raise RequestError(f"the console has no file {name!r}", status=404, code="not_found")
    return _file(name)


ROUTES = [
    Route(UI_PATH, console_page, methods=["GET"]),
    Route(UI_PATH + "/", console_slash, methods=["GET"]),
    Route(UI_PATH + "/{name}", console_file, methods=["GET"]),
]
