"""``lmroute eval``: evaluate routers on a benchmark and print the table (APGR, CPT, plots)."""

from __future__ import annotations

import argparse

from lmroute.cli._options import Subparsers, add_data_options, add_models_options, add_quiet_option, data_dir
from lmroute.cli._output import check_output, refuse_overwriting_inputs, write_json_report, wrote

#: The routers evaluated when ``--routers`` is not given.
DEFAULT_ROUTERS = ("random", "length")


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``eval`` command and its options."""
    p = subparsers.add_parser("eval", help="evaluate routers on a benchmark (APGR, CPT, plots)")
    p.add_argument("--benchmark", required=True, help="mmlu, gsm8k, mt-bench, or a custom .jsonl/.csv file")
    p.add_argument(
        "--routers",
        nargs="+",
        action="extend",
        help="router names or saved router directories (default: random length)",
    )
    p.add_argument(
        "--protocol",
        choices=("paper", "exact"),
        help="paper (default): 10 quantile bins as the reference; exact: every threshold",
    )
    p.add_argument("--strong-model", help="strong model of a custom benchmark")
    p.add_argument("--weak-model", help="weak model of a custom benchmark")
    p.add_argument("--threshold", type=float, help="threshold for the 'strong %% @t' column (default 0.5)")
    p.add_argument("--json", help="write all metrics and curve points to this JSON file")
    p.add_argument("--plot", help="write the call–performance curves to this PNG")
    p.add_argument("--save-scores", help="write each item's score to this JSONL file")
    p.add_argument("--no-oracle", action="store_true", help="leave out the oracle router")
    add_models_options(p)
    p.add_argument(
        "--policy",
        choices=("lambda", "quality"),
        help="with --models: the policy whose knob is swept (default lambda)",
    )
    add_quiet_option(p)
    add_data_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate the routers, print the table and write the files asked for."""
    from lmroute import _extras
    from lmroute.data.benchmarks import load_benchmark
    from lmroute.evaluation.evaluator import evaluate
    from lmroute.evaluation.report import format_table
    from lmroute.registry import load_router, report_name

    # Not argparse's default: the list --routers extends would keep random and length in front of
    # the routers given.
    specs = args.routers or list(DEFAULT_ROUTERS)
    _check_mode(args)
    if args.plot and not _extras.available("matplotlib"):
        raise _extras.missing("matplotlib", purpose="--plot")  # before the work, not after it
    if args.plot:
        from lmroute.evaluation.plots import plot_file

        # A format matplotlib cannot write: before the work and the --json file. The file written (a
        # name without a suffix gets .png) is the one the checks below compare with the others.
        args.plot = str(plot_file(args.plot))
    args.benchmark = _benchmark(args)
    inputs = [args.benchmark, *([args.prices] if args.prices else [])]
    refuse_overwriting_inputs(args, ("json", "plot", "save_scores"), inputs)
    # All before the work, as they are written one after another: a bad last one must not fail after
    # the first was overwritten.
    for output in (args.json, args.plot, args.save_scores):
        check_output(output)
    if args.models:
        return _run_n_models(args, specs)
    benchmark = load_benchmark(
        args.benchmark,
        data_dir=data_dir(args),
        strong_model=args.strong_model,
        weak_model=args.weak_model,
        download_url=args.data_url,
    )
    routers = [load_router(spec) for spec in specs]
    evaluation = evaluate(
        routers,
        benchmark,
        protocol=args.protocol or "paper",
        threshold=0.5 if args.threshold is None else args.threshold,
        progress=not args.quiet,
        names=[report_name(spec, router) for spec, router in zip(specs, routers, strict=True)],
        oracle=not args.no_oracle,
    )
    print(format_table(evaluation))
    if args.json:
        write_json_report(args.json, evaluation.to_dict())
    if args.plot:
        from lmroute.evaluation.plots import plot_curves

        wrote(plot_curves(evaluation, args.plot))
    if args.save_scores:
        from lmroute._jsonl import write_jsonl
        from lmroute.evaluation.evaluator import item_scores

        wrote(write_jsonl(args.save_scores, item_scores(evaluation, benchmark)))
    return 0


def _benchmark(args: argparse.Namespace) -> str:
    """``--benchmark``: a public benchmark's name as given, else the file found as ``gold:FILE``'s
    is (a relative path in the working directory, then the data folders), so the outputs are
    checked against, and N-model evaluation reads, the file evaluated."""
    from lmroute.data.benchmarks import PUBLIC_BENCHMARKS, find_benchmark_file

    if args.benchmark.lower().replace("_", "-") in PUBLIC_BENCHMARKS:
        return str(args.benchmark)
    return str(find_benchmark_file(args.benchmark, data_dir(args)))


def _check_mode(args: argparse.Namespace) -> None:
    """A ConfigError for an option of the other kind of evaluation, which would be ignored (a
    ``--save-scores`` file never written, the pair of ``--strong-model`` not routed between)."""
    from lmroute.exceptions import ConfigError

    if args.models:
        pair = (("--strong-model", args.strong_model), ("--weak-model", args.weak_model))
        curve = (("--protocol", args.protocol), ("--threshold", args.threshold))
        given = [f for f, v in (*pair, *curve, ("--save-scores", args.save_scores)) if v is not None]
        if given:
            raise ConfigError(
                f"{given[0]} is for two-model evaluation; with --models the report is the cost–quality "
                "evaluation (--json, --plot)"
            )
    else:
        given = [f for f, v in (("--prices", args.prices), ("--policy", args.policy)) if v]
        if given:
            raise ConfigError(f"{given[0]} is for N-model evaluation: give --models too")


def _run_n_models(args: argparse.Namespace, specs: list[str]) -> int:
    """Cost–quality evaluation of N-model routing on a custom benchmark file (``--models``)."""
    from pathlib import Path

    from lmroute.catalogue import Catalogue, read_prices
    from lmroute.data.benchmarks import PUBLIC_BENCHMARKS
    from lmroute.data.custom import read_custom
    from lmroute.evaluation.routing import evaluate_router, format_summary
    from lmroute.exceptions import ConfigError
    from lmroute.registry import load_router, report_name

    if not args.prices:
        raise ConfigError("--models needs --prices FILE: the price of each model (e.g. examples/prices.yaml)")
    if len(specs) != 1:
        raise ConfigError("with --models give one router (--routers NAME|DIR)")
    key = args.benchmark.lower().replace("_", "-")
    if key in PUBLIC_BENCHMARKS and not Path(args.benchmark).exists():
        raise ConfigError(
            f"--models evaluates a benchmark file of many models' scores; {args.benchmark} holds two "
            "models: evaluate it without --models"
        )
    catalogue = Catalogue.from_prices(args.models, read_prices(args.prices), where=args.prices)
    table = read_custom(args.benchmark)
    router = load_router(specs[0])
    evaluation = evaluate_router(
        router,
        catalogue,
        table,
        policy=args.policy or "lambda",
        label=report_name(specs[0], router),
        oracle=not args.no_oracle,
    )
    print(format_summary(evaluation))
    if args.json:
        write_json_report(args.json, evaluation.to_dict())
    if args.plot:
        from lmroute.evaluation.plots import plot_cost_quality

        wrote(plot_cost_quality(evaluation, args.plot))
    return 0
