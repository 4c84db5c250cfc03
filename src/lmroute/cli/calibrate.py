"""``lmroute calibrate``: the threshold that sends a chosen share of prompts to the strong model."""

from __future__ import annotations

import argparse

from lmroute.cli._options import Subparsers, add_data_dir_option, add_router_option
from lmroute.cli._output import write_json_report


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``calibrate`` command and its options."""
    p = subparsers.add_parser(
        "calibrate", help="the threshold that sends a share of prompts to the strong model"
    )
    add_router_option(p)
    p.add_argument(
        "--strong-pct",
        type=float,
        required=True,
        metavar="FRACTION",
        help="share of prompts for the strong model, as a fraction (0.5 = 50%%)",
    )
    p.add_argument(
        "--prompts",
        help="your prompts: JSONL with a 'prompt' field, or one per line "
        "(default: the public Arena-Hard sample, arena-hard/questions.jsonl of the data folder)",
    )
    add_data_dir_option(p)
    p.add_argument(
        "--prompts-url",
        help="where to download Arena-Hard's question.jsonl from when no data folder has it "
        "(default: $LMROUTE_PROMPTS_URL, else arena-hard-auto on GitHub)",
    )
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        metavar="T",
        help="thresholds to tabulate (default: those for 10%%, 20%%... 90%% strong)",
    )
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score the prompts, print the threshold with its model name and the table; write the JSON."""
    from lmroute.calibration import calibrate, calibration_prompts, format_calibration
    from lmroute.registry import load_router, serving_name

    router = load_router(args.router)
    prompts, source = calibration_prompts(args.prompts, data_dir=args.data_dir, url=args.prompts_url)
    name = serving_name(args.router, router)
    result = calibrate(router, prompts, args.strong_pct, thresholds=args.thresholds, name=name)
    print(format_calibration(result, source=source))
    if args.json:
        write_json_report(args.json, result.to_dict())
    return 0
