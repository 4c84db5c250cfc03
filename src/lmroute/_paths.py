"""Where lmroute keeps downloaded data and caches: the user cache directory, never the package."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The lmroute cache directory (``LMROUTE_CACHE_DIR`` or the platform's user cache)."""
    override = os.environ.get("LMROUTE_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lmroute", appauthor=False))
