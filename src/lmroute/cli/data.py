"""``lmroute data``: load, check, deduplicate and decontaminate training battles; report on them."""

from __future__ import annotations

import argparse

from lmroute.cli._options import (
    Subparsers,
    add_data_options,
    add_decontamination_options,
    data_dir,
    parse_aliases,
)
from lmroute.cli._output import note, write_json_report


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``data`` command and its options."""
    p = subparsers.add_parser("data", help="load, check, deduplicate and decontaminate training battles")
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="arena:FILE battles:FILE alpaca-eval[:DIR] gold:mmlu|gsm8k|mt-bench gold:FILE "
        "(options after '?', e.g. gold:crux.jsonl?max_pairs=16)",
    )
    add_decontamination_options(p)
    p.add_argument(
        "--threshold",
        type=float,
        help="cosine similarity at or above which a prompt is a near duplicate (default 0.90 for "
        "MiniLM; see lmroute.data.decontaminate)",
    )
    p.add_argument("--exact-only", action="store_true", help="decontaminate by exact matches only")
    p.add_argument("--embedder", default="minilm", help="embedder for near duplicates (default minilm)")
    p.add_argument("--alias", nargs="*", metavar="OLD=NEW", help="rename a model in every source")
    p.add_argument(
        "--min-model-battles",
        type=int,
        default=2,
        help="drop battles of models seen in fewer battles than this (default 2)",
    )
    p.add_argument("--out", help="write the battles to this JSONL file (readable as battles:FILE)")
    p.add_argument("--report", help="write the report to this JSON file")
    add_data_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Prepare the battles, print the report and write the files asked for."""
    from lmroute._jsonl import write_jsonl
    from lmroute.data.battles import battle_records
    from lmroute.data.benchmarks import PUBLIC_BENCHMARKS
    from lmroute.data.decontaminate import DEFAULT_THRESHOLD
    from lmroute.data.prepare import prepare_battles

    against = list(PUBLIC_BENCHMARKS) if args.decontaminate else []
    embedder = None
    if (args.exclude_benchmark or against) and not args.exact_only:
        from lmroute.embeddings import get_embedder

        embedder = get_embedder(args.embedder)
    threshold: float | None = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if args.exact_only:
        threshold = None
    battles, report = prepare_battles(
        args.sources,
        data_dir=data_dir(args),
        exclude_benchmarks=args.exclude_benchmark,
        decontaminate_against=against,
        embedder=embedder,
        threshold=threshold,
        min_model_battles=args.min_model_battles,
        aliases=dict(parse_aliases(args.alias)),
    )
    print(report.describe(all_models=True))
    if args.report:
        write_json_report(args.report, report.to_dict())
    if args.out:
        note(f"wrote {len(battles):,} battles to {write_jsonl(args.out, battle_records(battles))}")
    return 0
