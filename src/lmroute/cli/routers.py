"""``lmroute routers``: list the registered routers and the options each takes."""

from __future__ import annotations

import argparse

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

    for name in args.names or router_names():
        cls = get_router_class(name)
        if args.names_only:
            print(name)
            continue
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name}: {summary}")
        for option, info in cls.config_class.model_fields.items():
            kind = getattr(info.annotation, "__name__", None) or str(info.annotation).replace("typing.", "")
            if info.is_required():
                print(f"  {option} ({kind}, required)")
            else:
                print(f"  {option}={info.get_default(call_default_factory=True)!r} ({kind})")
    return 0
