"""``lmroute calibrate``: the threshold that sends a chosen share of prompts to the strong model, or
with ``--models``, the lambda or tau of an N-model policy that meets a budget or a target quality."""

from __future__ import annotations

import argparse

from lmroute.cli._options import Subparsers, add_data_dir_option, add_models_options, add_router_option
from lmroute.cli._output import check_output, refuse_overwriting_inputs, write_json_report


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``calibrate`` command and its options."""
    p = subparsers.add_parser(
        "calibrate", help="the threshold that sends a share of prompts to the strong model"
    )
    add_router_option(p)
    p.add_argument(
        "--strong-pct",
        type=float,
        metavar="FRACTION",
        help="share of prompts for the strong model, as a fraction (0.5 = 50%%)",
    )
    add_models_options(p)
    p.add_argument(
        "--budget",
        type=float,
        metavar="USD",
        help="with --models: dollars per 1,000 requests to spend at most",
    )
    p.add_argument(
        "--target-quality",
        type=float,
        metavar="Q",
        help="with --models: mean predicted quality to reach, on the router's scale "
        "(P(beats its average model))",
    )
    p.add_argument(
        "--policy",
        choices=("lambda", "quality"),
        help="with --models: maximise quality - lambda*cost (lambda, the default), or the cheapest model "
        "with quality >= tau (quality)",
    )
    p.add_argument(
        "--prompts",
        help="your prompts: JSONL with a 'prompt' field, CSV with a 'prompt' column, or one per line "
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
        action="extend",
        metavar="T",
        help="thresholds to tabulate (default: those for 10%%, 20%%... 90%% strong)",
    )
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score the prompts, print the threshold with its model name and the table; write the JSON."""
    from lmroute.calibration import calibrate, calibration_prompts, format_calibration
    from lmroute.exceptions import ConfigError
    from lmroute.registry import load_router, serving_name

    inputs = [f for f in (args.prompts, args.prices) if f]
    refuse_overwriting_inputs(args, ("json",), inputs)
    check_output(args.json)
    # An option of the other kind of calibration would be ignored: refused before the work.
    if args.models and args.thresholds:
        raise ConfigError(
            "--thresholds tabulates two-model thresholds; with --models give --budget or --target-quality"
        )
    for option in ("budget", "target_quality", "prices", "policy"):
        if not args.models and getattr(args, option) is not None:
            flag = "--" + option.replace("_", "-")
            raise ConfigError(
                f"{flag} goes with --models (N priced models); for two models give --strong-pct"
            )
    if args.prompts == "":
        # An unset variable (--prompts "$PROMPTS"): the public sample would stand in for the traffic.
        raise ConfigError(
            "--prompts is empty: give your prompt file, or leave --prompts out to calibrate on "
            "the public Arena-Hard sample"
        )
    if args.models and len(args.models) < 2:
        # As a server configured with one model refuses it: there is nothing to route.
        raise ConfigError(
            f"--models routes among at least two models, got {len(args.models)}: {', '.join(args.models)}"
        )
    router = load_router(args.router)
    if args.models:
        return _run_policy(args, router)
    if args.strong_pct is None:
        raise ConfigError("give --strong-pct (two models), or --models with --budget or --target-quality")
    prompts, source = calibration_prompts(args.prompts, data_dir=args.data_dir, url=args.prompts_url)
    name = serving_name(args.router, router)
    result = calibrate(router, prompts, args.strong_pct, thresholds=args.thresholds, name=name)
    print(format_calibration(result, source=source))
    if args.json:
        write_json_report(args.json, result.to_dict())
    return 0


def _run_policy(args: argparse.Namespace, router) -> int:
    """The N-model policy's knob for ``--budget`` or ``--target-quality`` on the prompts."""
    from lmroute.budget import calibrate_policy, format_policy_calibration
    from lmroute.calibration import calibration_prompts
    from lmroute.catalogue import Catalogue, read_prices
    from lmroute.exceptions import ConfigError
    from lmroute.registry import serving_name

    if args.strong_pct is not None:
        raise ConfigError("--strong-pct is for two models; with --models give --budget or --target-quality")
    if (args.budget is None) == (args.target_quality is None):
        raise ConfigError("with --models give either --budget (USD per 1,000 requests) or --target-quality")
    if not args.prices:
        raise ConfigError("--models needs --prices FILE: the price of each model (e.g. examples/prices.yaml)")
    catalogue = Catalogue.from_prices(args.models, read_prices(args.prices), where=args.prices)
    # Before the prompts are read (or downloaded): a router that cannot predict N models says so.
    catalogue.predict_quality(router, [])
    prompts, source = calibration_prompts(args.prompts, data_dir=args.data_dir, url=args.prompts_url)
    result = calibrate_policy(
        router,
        catalogue,
        prompts,
        policy=args.policy or "lambda",
        budget=args.budget,
        target_quality=args.target_quality,
        name=serving_name(args.router, router),
    )
    print(format_policy_calibration(result, source=source))
    if args.json:
        write_json_report(args.json, result.to_dict())
    return 0
