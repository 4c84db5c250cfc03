"""Headless Chromium for the console tests: the Debian package's browser driven by Playwright.

``chromium_path()`` finds the system browser (``$LMROUTE_CHROMIUM``, Debian's binary, or ``chromium``
on the PATH); ``scripts/test.sh`` installs it (``apt-get install chromium``) when it is missing, and
Playwright comes from the ``test`` extra. Playwright's own browser downloads are never used.
``watch(page)`` collects what would show in the browser's console as an error.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

#: Debian's real binary; /usr/bin/chromium is a shell wrapper around it.
_DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"


def chromium_path() -> str:
    """The system Chromium to drive; RuntimeError saying how to install it when there is none."""
    candidates = [os.environ.get("LMROUTE_CHROMIUM"), _DEBIAN_CHROMIUM]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser")]
    for path in candidates:
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    raise RuntimeError("no Chromium found: apt-get install chromium (or set LMROUTE_CHROMIUM)")


@dataclass
class ConsoleLog:
    """Errors a page reported: console.error messages, uncaught exceptions and failed requests."""

    errors: list[str] = field(default_factory=list)
    #: Failed responses that the test provoked on purpose (path -> allowed statuses) are not errors.
    expected_statuses: dict[str, set[int]] = field(default_factory=dict)


def watch(page) -> ConsoleLog:
    """Record the page's console errors and uncaught exceptions in a :class:`ConsoleLog`."""
    log = ConsoleLog()

    def on_console(message) -> None:
        if message.type != "error":
            return
        # Chromium logs every non-2xx fetch as a console error; the ones a test provokes are expected.
        url = (message.location or {}).get("url", "")
        text = message.text
        for path, statuses in log.expected_statuses.items():
            if path in url and any(f"status of {s}" in text for s in statuses):
                return
        log.errors.append(f"console: {text} ({url})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: log.errors.append(f"uncaught: {exc}"))
    return log
