"""API keys read from the environment, the one place lmroute takes them from."""

from __future__ import annotations

import os

from lmroute.exceptions import ConfigError


def key_from_env(variable: str, what: str) -> str:
    """The value of environment variable ``variable`` without surrounding whitespace ("" when
    unset); ConfigError naming ``what`` when a control character is inside.

    A key read from a file (a mounted secret, an env file with CRLF) often ends in a line break,
    which no HTTP header can carry: every request would fail on it.
    """
    key = os.environ.get(variable, "").strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise ConfigError(f"{what} holds a line break or another control character")
    return key
