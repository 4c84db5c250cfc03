"""``lmroute train``: train a router on preference data and save it."""

from __future__ import annotations

import argparse

from lmroute.cli._options import (
    Subparsers,
    add_data_dir_option,
    add_decontamination_options,
    add_quiet_option,
    data_dir,
    parse_aliases,
    parse_settings,
)
from lmroute.cli._output import check_output, note


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``train`` command and its options."""
    p = subparsers.add_parser("train", help="train a router on preference data and save it")
    p.add_argument("router", help="router to train (mf, sw_ranking, bert, causal_llm, ...)")
    p.add_argument(
        "--data",
        nargs="+",
        action="extend",
        required=True,
        metavar="SOURCE",
        help="training sources: arena:FILE battles:FILE alpaca-eval[:DIR] gold:mmlu|gsm8k|mt-bench gold:FILE",
    )
    p.add_argument("--out", required=True, help="directory to write the trained router to")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        help="router options, e.g. --set epochs=20 dim=64 (repeatable)",
    )
    p.add_argument(
        "--alias",
        nargs="+",
        action="extend",
        metavar="OLD=NEW",
        help="rename a model in every source (one model spelled two ways: its battles are pooled)",
    )
    add_decontamination_options(p)
    add_quiet_option(p)
    add_data_dir_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train the router and save it to ``--out``."""
    from lmroute.routers.base import check_save_folder
    from lmroute.workflows.train import train_router

    check_output(args.out, folder=True)  # before the training, not after it
    check_save_folder(args.out)
    router = train_router(
        args.router,
        args.data,
        out=args.out,
        data_dir=data_dir(args),
        options=parse_settings(args.set),
        exclude_benchmarks=args.exclude_benchmark,
        decontaminate=args.decontaminate,
        aliases=dict(parse_aliases(args.alias)),
        progress=not args.quiet,
    )
    note(f"trained {router.name}: wrote {args.out}")
    return 0
