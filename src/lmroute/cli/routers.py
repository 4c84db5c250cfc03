"""``lmroute routers``: list the registered routers and the options each takes."""

from __future__ import annotations

import argparse
from typing import Literal, get_args, get_origin

from lmroute.cli._options import Subparsers


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``routers`` command."""
    p = subparsers.add_parser(
        "routers",
        help="list the registered routers and their options (lmroute train --set KEY=VALUE)",
    )
    p.add_argument("names", nargs="*", metavar="ROUTER", help="only these routers (default: all)")
    p.add_argument("--names-only", action="store_true", help="one router name a line, no options")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print each router's name and summary, then its options with their types and defaults."""
    from lmroute.registry import get_router_class, router_names

    names = list(dict.fromkeys(args.names)) or router_names()  # a name given twice is listed once
    classes = [get_router_class(name) for name in names]  # an unknown name before any output
    for name, cls in zip(names, classes, strict=True):
        if args.names_only:
            print(name)
            continue
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name}: {summary}")
        fields = cls.config_class.model_fields
        # A classifier's default preset fills options left unset (causal_llm: num_layers=16): list
        # what a router trained without --set gets, not the bare field default the preset replaces.
        presets: dict[str, dict[str, object]] = getattr(cls.config_class, "presets", {})
        preset = presets.get(fields["preset"].default, {}) if "preset" in fields else {}
        for option, info in fields.items():
            kind = _kind(info.annotation)
            if info.is_required():
                print(f"  {option} ({kind}, required)")
            else:
                default = preset.get(option, info.get_default(call_default_factory=True))
                print(f"  {option}={default!r} ({kind})")
    return 0


def _kind(annotation: object) -> str:
    """An option's type as ``lmroute train --set`` takes it: a choice lists its values."""
    from pydantic import BaseModel

    if get_origin(annotation) is Literal:
        *first, last = (repr(v) for v in get_args(annotation))
        return f"{', '.join(first)} or {last}" if first else last
    # A list of objects (an ensemble's members) was "(tuple)": name the keys each object takes.
    item = next(iter(get_args(annotation)), None) if get_origin(annotation) in (tuple, list) else None
    if isinstance(item, type) and issubclass(item, BaseModel):
        return f"list of {{{', '.join(item.model_fields)}}}"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
