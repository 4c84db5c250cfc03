"""Options that several commands share, defined once, and the readers of their values.

Only ``argparse`` is imported here: building the parser must stay cheap, so that
``lmroute --help`` loads no library code.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence

#: What ``ArgumentParser.add_subparsers`` returns (a private class of argparse); each command
#: module adds its parser to it. A plain name, not a ``typing.TYPE_CHECKING`` import: importing
#: ``typing`` for annotations alone would add a few ms to every ``lmroute --help``.
Subparsers = argparse._SubParsersAction


def add_data_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``: the data folder every command that reads public data accepts."""
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data folder (routellm-evals/, arena-hard/...; `lmroute data pull` makes one). Public "
        "files are looked up here, then in $LMROUTE_DATA_DIR, then in the user cache, and only then "
        "downloaded into the cache",
    )


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--data-url``: where the evaluation files are read or downloaded from."""
    add_data_dir_option(parser)
    parser.add_argument(
        "--data-url",
        help="where to download the evaluation files from (default: $LMROUTE_DATA_URL, else "
        "RouteLLM's GitHub)",
    )


def data_dir(args: argparse.Namespace) -> str | None:
    """The ``--data-dir`` given, or None: the library applies the rest of the rule
    (``$LMROUTE_DATA_DIR``, the user cache, a download; :mod:`lmroute.data.public`)."""
    return args.data_dir or None


def add_router_option(parser: argparse.ArgumentParser) -> None:
    """``--router``: the one router a command uses."""
    parser.add_argument("--router", required=True, help="router name or saved router directory")


def add_quiet_option(parser: argparse.ArgumentParser, *, text: str = "no progress bars") -> None:
    """``--quiet``: no progress output (``text`` is its help)."""
    parser.add_argument("--quiet", action="store_true", help=text)


def add_ray_options(parser: argparse.ArgumentParser, *, ray_help: str, actors: str) -> None:
    """``--ray``, ``--ray-address`` and ``--ray-actors``: a bulk command run over Ray Data."""
    parser.add_argument("--ray", action="store_true", help=ray_help)
    parser.add_argument(
        "--ray-address", help="the Ray cluster (e.g. auto, 10.0.0.5:6379; default: a local one)"
    )
    parser.add_argument("--ray-actors", type=int, help=f"Ray Data {actors} at once (default 2)")


def ray_actors(args: argparse.Namespace) -> int:
    """``--ray-actors`` (default 2): at least 1, and given only with ``--ray`` or ``--ray-address``,
    without which it would do nothing."""
    from lmroute.exceptions import ConfigError

    if args.ray_actors is None:
        return 2
    if not (args.ray or args.ray_address):
        raise ConfigError("--ray-actors goes with --ray (or --ray-address): without it nothing runs on Ray")
    if args.ray_actors < 1:
        raise ConfigError(f"--ray-actors must be at least 1, not {args.ray_actors}")
    return int(args.ray_actors)


def add_decontamination_options(parser: argparse.ArgumentParser) -> None:
    """``--exclude-benchmark`` and ``--decontaminate``: keep evaluation prompts out of training data."""
    parser.add_argument(
        "--exclude-benchmark",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME",
        help="drop NAME's gold labels and training prompts that (nearly) duplicate NAME's; NAME is "
        "mmlu, gsm8k, mt-bench or a benchmark file (a relative path not in the working directory is "
        "looked up in the data folder)",
    )
    parser.add_argument(
        "--decontaminate",
        action="store_true",
        help="drop training prompts that (nearly) duplicate any public benchmark prompt",
    )


def parse_settings(pairs: Sequence[str] | None) -> dict[str, object]:
    """``--set KEY=VALUE`` pairs as options: each value read as YAML (``3`` is a number, ``[a, b]``
    a list), dashes in keys made underscores."""
    from lmroute._yaml import load_yaml_text
    from lmroute.exceptions import ConfigError

    options: dict[str, object] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        options[key.replace("-", "_")] = load_yaml_text(value, what=f"--set {pair!r}")
    return options


def parse_aliases(pairs: Sequence[str] | None) -> Iterator[tuple[str, str]]:
    """``--alias OLD=NEW`` pairs as ``(old, new)`` model names, spaces around them stripped."""
    from lmroute.exceptions import ConfigError

    for pair in pairs or ():
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ConfigError(f"--alias expects OLD=NEW, got {pair!r}")
        yield old.strip(), new.strip()


def add_models_options(parser: argparse.ArgumentParser, *, prices: bool = True) -> None:
    """``--models`` (N-model routing: NAME or SERVED=VOCABULARY each) and ``--prices`` (a price file)."""
    parser.add_argument(
        "--models",
        nargs="+",
        action="extend",
        metavar="MODEL",
        help="route among these models of the router's vocabulary (NAME, or SERVED=VOCABULARY to serve "
        "a vocabulary model under another name)",
    )
    if prices:
        parser.add_argument(
            "--prices",
            metavar="FILE",
            help="price file of the models (YAML; e.g. examples/prices.yaml), needed with --models",
        )
