"""``lmroute score``: score prompts with a router, as JSONL on standard output or in a file.

With ``--models A B C`` each line holds every model's predicted quality (``Router.predict_quality``)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from lmroute.cli._options import (
    Subparsers,
    add_models_options,
    add_quiet_option,
    add_ray_options,
    add_router_option,
    ray_actors,
)
from lmroute.cli._output import check_output, note, print_jsonl, refuse_overwriting_inputs


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``score`` command and its options."""
    p = subparsers.add_parser("score", help="score prompts with a router")
    add_router_option(p)
    p.add_argument(
        "--input",
        required=True,
        help="JSONL with a 'prompt' field, CSV with a 'prompt' column, or text lines",
    )
    p.add_argument("--output", help="JSONL output file (default: standard output)")
    add_ray_options(
        p,
        ray_help="score on a Ray cluster with Ray Data; with --output, a run that stopped goes on where "
        "it was",
        actors="actors scoring",
    )
    add_models_options(p, prices=False)
    add_quiet_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score the prompts of ``--input``; print the records or write them to ``--output``."""
    from lmroute._jsonl import write_jsonl
    from lmroute.data.prompts import read_prompts
    from lmroute.evaluation.evaluator import score_prompts, score_records
    from lmroute.registry import load_router

    refuse_overwriting_inputs(args, ("output",), [args.input])
    if args.output != "-":  # "-" is standard output
        check_output(args.output)
    actors = ray_actors(args)
    prompts = read_prompts(args.input)
    if (args.ray or args.ray_address) and args.models:
        from lmroute.exceptions import ConfigError

        raise ConfigError(
            "--ray writes two-model scores only: leave out --models (or --ray, to score --models here)"
        )
    if args.ray or args.ray_address:
        return _run_on_ray(args, prompts, actors)
    router = load_router(args.router)
    records: Iterable[dict] = (
        _quality_records(router, prompts, args.models)
        if args.models
        else score_records(prompts, score_prompts(router, prompts, progress=not args.quiet))
    )
    if args.output in (None, "-"):
        print_jsonl(records)
    else:
        write_jsonl(args.output, records)
        note(f"scored {len(prompts)} prompts with {router.name}: wrote {args.output}")
    return 0


def _run_on_ray(args: argparse.Namespace, prompts: list[str], actors: int) -> int:
    from lmroute import _extras
    from lmroute.evaluation.evaluator import score_records

    if not _extras.available("ray"):
        raise _extras.missing("ray", purpose="lmroute score --ray")
    from lmroute.cluster.bulk import score_file_on_ray, score_on_ray

    options = {"address": args.ray_address, "actors": actors, "progress": not args.quiet}
    if args.output in (None, "-"):
        print_jsonl(score_records(prompts, score_on_ray(args.router, prompts, **options)))
        return 0
    scored = score_file_on_ray(args.router, prompts, args.output, **options)
    note(f"scored {scored} prompts on Ray ({len(prompts) - scored} were there already): wrote {args.output}")
    return 0


def _quality_records(router, prompts: list[str], specs: list[str]) -> list[dict]:
    """One ``{"prompt", "scores": {served name: predicted quality}}`` record per prompt, in order."""
    from lmroute.catalogue import parse_model_specs, predict_quality

    pairs = parse_model_specs(specs)
    quality = predict_quality(router, prompts, [vocabulary for _, vocabulary in pairs])
    names = [served for served, _ in pairs]
    return [
        {"prompt": p, "scores": dict(zip(names, row.tolist(), strict=True))}
        for p, row in zip(prompts, quality, strict=True)
    ]
