"""``lmroute shrink``: fit a router's quality shrinkage on a benchmark of the deployed models."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmroute.cli._options import Subparsers, add_router_option
from lmroute.cli._output import check_output, note, refuse_overwriting_inputs, write_json_report


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``shrink`` command and its options."""
    p = subparsers.add_parser(
        "shrink",
        help="put a router's N-model predictions on a benchmark's scale (fitted on your models' scores)",
    )
    add_router_option(p)
    p.add_argument(
        "--models",
        nargs="+",
        action="extend",
        required=True,
        metavar="MODEL",
        help="the deployed models, as named in the benchmark (NAME, or SERVED=VOCABULARY)",
    )
    p.add_argument(
        "--benchmark",
        required=True,
        help="custom benchmark file with the models' scores in [0, 1] on prompts like your traffic",
    )
    p.add_argument("--out", required=True, help="folder for the router with its shrinkage")
    p.add_argument("--json", help="also write the summary to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fit the shrinkage, save the router, print what was fitted."""
    from lmroute.exceptions import ConfigError
    from lmroute.routers.base import CONFIG_FILE, WEIGHTS_FILE, check_save_folder
    from lmroute.workflows.shrink import shrink_router

    # Both before the fit, and --json before the router is saved: a bad --json would leave it behind.
    check_output(args.out, folder=True)
    check_save_folder(args.out)
    check_output(args.json)
    refuse_overwriting_inputs(args, ("json",), [args.benchmark])
    if args.json:
        summary, out = Path(args.json).resolve(), Path(args.out).resolve()
        if summary == out:  # failed once the router was saved, which was left behind
            raise ConfigError(f"--json {args.json} is the --out folder: give the summary a file of its own")
        for name in (CONFIG_FILE, WEIGHTS_FILE):  # written after the router: it no longer loaded
            if summary == out / name or out / name in summary.parents:
                raise ConfigError(
                    f"--json {args.json} is the saved router's {name} in --out {args.out}, which the "
                    "summary would replace: write it elsewhere"
                )
    result = shrink_router(args.router, args.benchmark, args.models)
    directory = result.router.save(args.out)
    s = result.summary
    print(f"alpha {s['alpha']:.3f} from {s['lines']} lines ({s['skipped']} skipped: a model's score missing)")
    print(f"{'model':40s} {'mean score':>10s} {'mean predicted':>15s}")
    for name, m in s["models"].items():
        print(f"{name:40s} {m['mean_score']:10.4f} {m['mean_predicted']:15.4f}")
    if args.json:
        write_json_report(args.json, {**s, "out": str(directory)})
    note(f"wrote {directory}: its N-model qualities are now on the benchmark's scale")
    return 0
