"""Reading the YAML files users write (serving configs, experiments, upstreams, judge templates).

Every failure is one ConfigError line naming the file: it cannot be read, it is not UTF-8, or its
YAML is invalid at a line and column. PyYAML's own messages span several lines with a caret
drawing, which the command line would print as a broken error. A key given twice in one mapping is
invalid too (YAML requires unique keys): PyYAML would silently keep the last value, so a setting the
user sees earlier in the file would not apply.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lmroute._files import read_failures
from lmroute.exceptions import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    Model = TypeVar("Model", bound=BaseModel)


def load_yaml_text(text: str, *, what: str) -> Any:
    """``text`` parsed as ``yaml.safe_load`` does, with keys unique in each mapping; ConfigError
    naming ``what`` when it is not YAML."""
    import yaml

    try:
        # what yaml.safe_load does, with the SafeLoader below: it builds no Python objects
        loader = _unique_keys_loader()(text)  # reads the text: a control character is an error
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {yaml_problem(exc)}") from None


@cache
def _unique_keys_loader() -> type:
    """PyYAML's SafeLoader refusing a key given twice in one mapping (merged ``<<`` keys may be
    overridden, as YAML intends)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


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


def validation_problems(
    exc: ValidationError, *, root: str = "config", under: tuple[str | int, ...] = ()
) -> str:
    """A pydantic error in one line: ``field.path: message; ...`` (``root`` names a top-level one;
    ``under``, the key of a setting validated apart, begins each path)."""
    return "; ".join(
        f"{'.'.join(map(str, (*under, *e['loc']))) or root}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )


def read_model(model: type[Model], path: str | Path) -> Model:
    """The YAML file at ``path`` validated as ``model``; one ConfigError line naming the file."""
    from pydantic import ValidationError

    raw = read_yaml(path, what=str(path))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc)}") from None


def yaml_kind(path: str | Path) -> str | None:
    """The ``kind:`` a YAML settings file declares (experiment files name their kind this way)."""
    raw = read_yaml(path, what=str(path))
    kind = raw.get("kind") if isinstance(raw, dict) else None
    return kind if isinstance(kind, str) else None
