"""``lmroute score``: score prompts with a router, as JSONL on standard output or in a file."""

from __future__ import annotations

import argparse

from lmroute.cli._options import Subparsers, add_quiet_option, add_router_option
from lmroute.cli._output import note


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``score`` command and its options."""
    p = subparsers.add_parser("score", help="score prompts with a router")
    add_router_option(p)
    p.add_argument("--input", required=True, help="JSONL with a 'prompt' field, or text lines")
    p.add_argument("--output", help="JSONL output file (default: standard output)")
    add_quiet_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score the prompts of ``--input``; print the records or write them to ``--output``."""
    from lmroute._jsonl import encode_line, write_jsonl
    from lmroute.data.prompts import read_prompts
    from lmroute.evaluation.evaluator import score_prompts, score_records
    from lmroute.registry import load_router

    prompts = read_prompts(args.input)
    router = load_router(args.router)
    records = score_records(prompts, score_prompts(router, prompts, progress=not args.quiet))
    if args.output in (None, "-"):
        for record in records:
            print(encode_line(record), end="")
    else:
        write_jsonl(args.output, records)
        note(f"scored {len(prompts)} prompts with {router.name}: wrote {args.output}")
    return 0
