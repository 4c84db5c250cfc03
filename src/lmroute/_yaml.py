"""Reading the YAML files users write (serving configs, experiments, upstreams, judge templates).

Every failure is one ConfigError line naming the file: it cannot be read, it is not UTF-8, or its
YAML is invalid at a line and column. PyYAML's own messages span several lines with a caret
drawing, which the command line would print as a broken error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmroute._files import read_failures
from lmroute.exceptions import ConfigError


def load_yaml_text(text: str, *, what: str) -> Any:
    """``text`` parsed with ``yaml.safe_load``; ConfigError naming ``what`` when it is not YAML."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {yaml_problem(exc)}") from None


def read_yaml(path: str | Path, *, what: str) -> Any:
    """The YAML document in the file at ``path`` (``what`` names it in errors, e.g. "config x.yaml")."""
    try:
        with read_failures(what, ConfigError, folder="a folder, not a YAML file"):
            text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} is not UTF-8 text (byte {exc.start}): is it a binary file?") from None
    return load_yaml_text(text, what=what)


def yaml_problem(exc: Exception) -> str:
    """A PyYAML error in one line: ``line 3, column 1: found character '\\t' ...``."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if problem is None:
        problem = " ".join(str(exc).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())
