"""``lmroute routers``: list the registered routers."""

from __future__ import annotations

import argparse

from lmroute.cli._options import Subparsers


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``routers`` command."""
    p = subparsers.add_parser("routers", help="list the registered routers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print each registered router's name on a line."""
    from lmroute.registry import router_names

    for name in router_names():
        print(name)
    return 0
