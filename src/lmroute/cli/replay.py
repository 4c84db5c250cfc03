"""``lmroute replay``: feed traffic in order through the server's control code and report per window."""

from __future__ import annotations

import argparse

from lmroute.cli._options import Subparsers, add_data_dir_option, add_quiet_option, data_dir
from lmroute.cli._output import check_output, note, refuse_overwriting_inputs, write_json_report


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``replay`` command and its options."""
    p = subparsers.add_parser(
        "replay", help="replay traffic through online control: realized share or spend, drift, quality"
    )
    p.add_argument(
        "--model",
        required=True,
        help="what to hold: router-mf-share-0.3, router-mf-spend-2.5 or router-mf-0.55",
    )
    p.add_argument("--router", help="router name, directory or NAME=DIRECTORY (default: the model's router)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--schedule", help="YAML schedule of traffic mixes (pools, calibration, segments)")
    source.add_argument(
        "--prompts",
        help="prompts in order: JSONL with a 'prompt' field, CSV with a 'prompt' column, or one per line",
    )
    p.add_argument(
        "--calibration", help="calibration prompts (default: the schedule's sample or the config's)"
    )
    p.add_argument(
        "--config",
        help="serving config: its control: settings (not its state file), and the models' prices for spend",
    )
    p.add_argument("--state", help="control state file: restored if it exists, saved at the end")
    p.add_argument("--seed", type=int, help="the schedule's seed (default: the file's)")
    p.add_argument("--window", type=int, default=500, help="requests per reported window (default 500)")
    p.add_argument("--json", help="write the report (every window) to this JSON file")
    p.add_argument("--plot", help="draw the per-window shares and the threshold to this PNG")
    add_data_dir_option(p)
    add_quiet_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the traffic, run it through a control hub, print the report; write JSON and plot."""
    import numpy as np

    from lmroute.control.config import ControlConfig
    from lmroute.control.taps import EmbeddingSummaries
    from lmroute.data.prompts import read_prompts
    from lmroute.exceptions import ConfigError, DataError
    from lmroute.routing_names import parse_model_name
    from lmroute.workflows.replay import load_replay_router, make_hub, run_replay
    from lmroute.workflows.replay_mix import Traffic, build_traffic, read_schedule, schedule_files
    from lmroute.workflows.replay_report import format_report, report

    if args.window < 1:
        raise ConfigError(f"--window must be at least 1, got {args.window}")
    if args.seed is not None and args.seed < 0:  # numpy's generators take none (a traceback)
        raise ConfigError(f"--seed must be 0 or more, got {args.seed}")
    if args.seed is not None and args.prompts:  # taken and ignored, it promised a shuffle never made
        raise ConfigError("--seed draws a --schedule's traffic; --prompts are replayed in their file's order")
    if args.plot:
        from lmroute.evaluation.plots import plot_file

        # A format matplotlib cannot write: before the replay and the --json file. The file written (a
        # name without a suffix gets .png) is the one the checks below compare with the others.
        args.plot = str(plot_file(args.plot))
    for output in (args.json, args.plot, args.state):  # the state file is saved at the end too
        check_output(output)
    inputs = [f for f in (args.prompts, args.schedule, args.calibration, args.config) if f]
    spec = parse_model_name(args.model)
    if spec.mode == "spend" and not args.config:
        # The hub's own message asks for a price: key, which a replay has nowhere to give but here.
        raise ConfigError(
            f"--model {args.model}: a spend target needs both models' prices: give --config SERVE.yaml "
            "whose strong: and weak: each have a price: {input_per_1m, output_per_1m}"
        )
    control, prices = ControlConfig(), None
    if args.config:
        from lmroute.serving.config import build_config

        serving = build_config(args.config)
        control, prices = serving.control, {"strong": serving.strong.price, "weak": serving.weak.price}
    # The state file is --state's alone: the config's control.state_file is a server's, which a
    # replay of made-up traffic restored and then overwrote, unchecked and unnamed on the command line.
    control = control.model_copy(update={"state_file": args.state})
    schedule = read_schedule(args.schedule) if args.schedule else None
    # The files the config and the schedule name are read too: --state naming one moved it aside
    # as a damaged state file and saved the state in its place, --json wrote over it.
    inputs += [control.calibration_prompts] if control.calibration_prompts else []
    inputs += [str(f) for f in schedule_files(schedule, data_dir=data_dir(args))] if schedule else []
    refuse_overwriting_inputs(args, ("json", "plot", "state"), inputs)
    calibration: list[str] | None = None
    if schedule is not None:
        if args.seed is not None:
            schedule = schedule.model_copy(update={"seed": args.seed})
        sample, traffic = build_traffic(schedule, data_dir=data_dir(args))
        calibration = sample.prompts if sample is not None else None
    else:
        prompts = read_prompts(args.prompts)
        n = len(prompts)
        traffic = Traffic(prompts, ["prompts"] * n, np.zeros(n, dtype=int), np.full((n, 2), np.nan))
    if args.calibration:
        calibration = read_prompts(args.calibration)
    elif calibration is None and control.calibration_prompts:
        try:
            calibration = read_prompts(control.calibration_prompts)
        except DataError as exc:  # named as lmroute serve names it: the file came from --config
            raise ConfigError(f"control.calibration_prompts in {args.config}: {exc}") from None
    summaries = EmbeddingSummaries()
    name, router = load_replay_router(args.router or spec.router, summaries)
    if name != spec.router:
        raise ConfigError(f"--router is served as {name!r} but --model names router {spec.router!r}")
    hub = make_hub(control, prices=prices)
    done = None if args.quiet else _progress(len(traffic))
    result = run_replay(
        traffic,
        spec=spec,
        router=router,
        hub=hub,
        summaries=summaries,
        calibration=calibration,
        progress=done,
    )
    if not args.quiet:
        note("")
    rows = None
    if calibration:
        scores = router.score(calibration)
        rows = np.stack([hub.row(spec, s, t) for s, t in zip(scores, _tokens(calibration), strict=True)])
    summary = report(result, traffic, calibration_rows=rows, window=args.window)
    print(format_report(summary))
    if args.json:
        write_json_report(args.json, {**summary, "threshold_every_10": result.thresholds[::10].tolist()})
    if args.plot:
        from lmroute.cli._output import wrote
        from lmroute.evaluation.plots import plot_replay

        wrote(plot_replay(summary, result.thresholds, args.plot))
    hub.save()  # last: a save that fails (a full disk) loses no report of the whole replay
    return 0


def _tokens(prompts: list[str]) -> list[float]:
    from lmroute.pricing import estimate_tokens

    return [estimate_tokens(p) for p in prompts]


def _progress(total: int):  # type: ignore[no-untyped-def]
    import sys

    def show(done: int) -> None:
        print(f"\rreplayed {done:,} of {total:,} requests", end="", file=sys.stderr, flush=True)

    return show
