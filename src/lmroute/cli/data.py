"""``lmroute data``: load, check, deduplicate and decontaminate training battles; report on them.

``lmroute data similarity``: how much a benchmark or prompt file looks like training data. ``data``
takes free positional sources, which leaves argparse no room for a sub-command, so the command line
``lmroute data similarity ...`` is parsed by the ``data-similarity`` parser (see
:data:`TWO_WORD_COMMANDS`), which ``lmroute --help`` does not list on its own.
"""

from __future__ import annotations

import argparse

from lmroute.cli._options import (
    Subparsers,
    add_data_dir_option,
    add_decontamination_options,
    data_dir,
    parse_aliases,
)
from lmroute.cli._output import check_output, note, refuse_overwriting_inputs, write_json_report

#: ``lmroute data similarity`` is the command line of the parser named ``data-similarity``.
TWO_WORD_COMMANDS = {("data", "similarity"): "data-similarity"}


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``data`` command and its options, and ``data similarity``."""
    p = subparsers.add_parser(
        "data",
        help="load, check, deduplicate and decontaminate training battles; "
        "`data similarity`: how much prompts look like training data",
        epilog="lmroute data similarity PROMPTS... --against SOURCE|ROUTER...: the similarity score of "
        "a benchmark or prompt file against training data (lmroute data similarity --help)",
    )
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
        help="with --exclude-benchmark or --decontaminate: cosine similarity at or above which a "
        "prompt is a near duplicate of a benchmark prompt (default 0.90 for MiniLM; see "
        "lmroute.data.decontaminate)",
    )
    p.add_argument(
        "--exact-only",
        action="store_true",
        help="decontaminate (--exclude-benchmark, --decontaminate) by exact matches only",
    )
    p.add_argument("--embedder", default="minilm", help="embedder for near duplicates (default minilm)")
    p.add_argument(
        "--alias", nargs="+", action="extend", metavar="OLD=NEW", help="rename a model in every source"
    )
    p.add_argument(
        "--min-model-battles",
        type=int,
        default=2,
        help="drop battles of models seen in fewer battles than this (default 2)",
    )
    p.add_argument("--out", help="write the battles to this JSONL file (readable as battles:FILE)")
    p.add_argument("--report", help="write the report to this JSON file")
    add_data_dir_option(p)
    p.set_defaults(func=run)
    _add_similarity_parser(subparsers)


def _add_similarity_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    # No help=: argparse then leaves it out of the command list; it is reached as `data similarity`.
    p = subparsers.add_parser(
        "data-similarity",
        prog="lmroute data similarity",
        description="The similarity score of prompts against training data: for each prompt, the "
        "largest cosine similarity of its embedding to any training prompt's; the score is their "
        "mean. Printed per source and over all sources, with the share of prompts whose nearest "
        "training prompt is at least each cut.",
    )
    p.add_argument(
        "prompts",
        nargs="+",
        metavar="PROMPTS",
        help="mmlu, gsm8k, mt-bench, or a file: .jsonl with a 'prompt' field (custom benchmarks "
        "have one), .csv with a 'prompt' column, or text with one prompt a line",
    )
    p.add_argument(
        "--against",
        nargs="+",
        action="extend",
        required=True,
        metavar="SOURCE|ROUTER",
        help="source specs as lmroute train --data takes them, or a trained router (mf, or a saved "
        "router directory) whose recorded training sources are used",
    )
    p.add_argument("--embedder", default="minilm", help="embedder of the prompts (default minilm)")
    p.add_argument(
        "--cuts",
        nargs="+",
        action="extend",
        type=float,
        metavar="S",
        help="report the share of prompts whose nearest neighbour is at least each S "
        "(default 0.95 0.9 0.8 0.7 0.6 0.5)",
    )
    p.add_argument("--json", help="write the figures to this JSON file")
    add_data_dir_option(p)
    p.set_defaults(func=run_similarity)


def run(args: argparse.Namespace) -> int:
    """Prepare the battles, print the report and write the files asked for."""
    from lmroute._jsonl import write_jsonl
    from lmroute.data.battles import battle_records
    from lmroute.data.benchmarks import PUBLIC_BENCHMARKS
    from lmroute.data.decontaminate import DEFAULT_THRESHOLD
    from lmroute.data.prepare import benchmark_file, prepare_battles
    from lmroute.data.sources import source_file
    from lmroute.exceptions import ConfigError

    if (args.threshold is not None or args.exact_only) and not (args.exclude_benchmark or args.decontaminate):
        raise ConfigError(
            "--threshold and --exact-only only set how training prompts are matched against benchmark "
            "prompts: add --exclude-benchmark NAME or --decontaminate (votes repeated across sources "
            "are dropped by exact match always)"
        )
    # As the loaders find them: a relative path may name a file in the data folder.
    found = [source_file(spec, data_dir(args)) for spec in args.sources]
    found += [benchmark_file(name, data_dir(args)) for name in args.exclude_benchmark]
    refuse_overwriting_inputs(args, ("out", "report"), [str(path) for path in found if path is not None])
    check_output(args.report)
    check_output(args.out)
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


def run_similarity(args: argparse.Namespace) -> int:
    """Print the similarity of each prompt set against the training data; write the JSON asked for."""
    from lmroute.data.similarity import DEFAULT_CUTS
    from lmroute.embeddings import get_embedder
    from lmroute.workflows.similarity import data_similarity

    check_output(args.json)
    refuse_overwriting_inputs(args, ("json",), _similarity_inputs(args))
    reports = data_similarity(
        args.prompts,
        args.against,
        data_dir=data_dir(args),
        embedder=get_embedder(args.embedder),
        cuts=args.cuts or DEFAULT_CUTS,
    )
    print("\n\n".join(r.describe() for r in reports))
    if args.json:
        write_json_report(args.json, [r.to_dict() for r in reports])
    return 0


def _similarity_inputs(args: argparse.Namespace) -> list[str]:
    """The files ``data similarity`` reads: prompt files and the files of source specs (a trained
    router's recorded sources are read where its training found them)."""
    from pathlib import Path

    from lmroute.data.sources import source_file
    from lmroute.exceptions import ConfigError

    inputs = [str(Path(p).expanduser()) for p in args.prompts]
    for item in args.against:
        try:
            found = source_file(item, data_dir(args))
        except ConfigError:  # a router, not a source spec (or neither: the workflow says so)
            continue
        if found is not None:
            inputs.append(str(found))
    return inputs
