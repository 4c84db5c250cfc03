"""``lmroute chat``: chat in the terminal; each answer says which model answered and the score."""

from __future__ import annotations

import argparse
import os

from lmroute.cli._options import Subparsers


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``chat`` command and its options."""
    p = subparsers.add_parser("chat", help="chat in the terminal; shows the model chosen and the score")
    p.add_argument(
        "--model",
        required=True,
        help="router-<router>-<threshold>, e.g. router-mf-0.52 (lmroute calibrate finds one)",
    )
    p.add_argument(
        "--url",
        default="http://127.0.0.1:6060",
        help="lmroute server, with or without /v1 (default: %(default)s)",
    )
    p.add_argument(
        "--api-key-env",
        default="LMROUTE_API_KEYS",
        metavar="VARIABLE",
        help="environment variable with the server's key (default: %(default)s, the one lmroute serve "
        "reads; of a comma-separated list, the first key)",
    )
    p.add_argument("--config", help="route in this process with a serve config instead of a server")
    p.add_argument("--system", help="system message that starts the conversation")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Chat with an lmroute server, or with a controller in this process (``--config``)."""
    from lmroute.serving.chat import run_chat, server_client

    if args.config:
        from lmroute.client import Controller

        with Controller.from_config(args.config) as controller:
            return run_chat(controller, model=args.model, system=args.system)
    from lmroute.serving.config import split_keys

    # the first key as the server reads the list: "$OLD,new" with $OLD empty is the key "new"
    key = next(iter(split_keys(os.environ.get(args.api_key_env, ""))), None)
    with server_client(args.url, api_key=key) as client:
        return run_chat(client, model=args.model, system=args.system)
