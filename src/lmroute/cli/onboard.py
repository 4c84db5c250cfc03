"""``lmroute onboard``: teach a trained router a new model from a probe file; write a new router."""

from __future__ import annotations

import argparse
import math

from lmroute.cli._options import Subparsers, add_router_option
from lmroute.cli._output import check_output, note


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``onboard`` command and its options."""
    p = subparsers.add_parser(
        "onboard",
        help="teach a router a new model from a probe file (only that model's parameters are fitted)",
    )
    add_router_option(p)
    p.add_argument(
        "--probe",
        required=True,
        help="custom benchmark file with the new model's and known models' scores, or battles JSONL",
    )
    p.add_argument("--model", required=True, help="the new model's name, as in the probe file")
    p.add_argument("--out", required=True, help="folder for the new router")
    p.add_argument(
        "--prior",
        type=float,
        default=5.0,
        help="pseudo-battles pulling the new model toward the known models' average (default 5)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Onboard the model and say what was learned from what."""
    from lmroute.exceptions import ConfigError
    from lmroute.routers.base import check_save_folder
    from lmroute.workflows.onboard import onboard

    if not 0 <= args.prior < math.inf:  # inf fitted a vector of NaNs: a router that predicts nothing
        raise ConfigError(f"--prior must be a finite number at least 0, got {args.prior}")
    check_output(args.out, folder=True)
    check_save_folder(args.out)
    result = onboard(args.router, args.probe, args.model, args.out, prior=args.prior)
    s = result.summary
    note(
        f"onboarded {s['model']} into a {s['router']} router from {s['battles']} battles on {s['prompts']} "
        f"prompts against {len(s['opponents'])} known models: wrote {s['out']}"
    )
    if s["lines_dropped"]:  # else a probe's malformed lines would go unnoticed
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(s["lines_dropped"].items()))
        note(f"probe lines that made no battle, left out: {reasons}")
    if s["unknown_models"]:  # else a probe naming models as served (gpt4o) would teach from fewer
        note(
            f"the probe's battles against {', '.join(s['unknown_models'])}, not in the router's vocabulary, "
            "left out: a probe names known models by their vocabulary names"
        )
    return 0
