"""``lmroute data pull``: fetch every public file lmroute can use into a folder to carry offline."""

from __future__ import annotations

import argparse

from lmroute.cli._options import Subparsers

#: The command's name: two words, joined by :func:`lmroute.cli.main` before parsing.
NAME = "data pull"


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``data pull`` command and its options."""
    p = subparsers.add_parser(
        NAME,
        prog="lmroute data pull",
        help="fetch the public data into a folder (with checksums and a manifest) to use offline",
        description="On a connected machine: download every public file lmroute can use into DIR, "
        "with SHA256SUMS and MANIFEST.json (sources and licences). Carry DIR to a machine without "
        "internet and pass it as --data-dir (or LMROUTE_DATA_DIR). Download sources move with "
        "LMROUTE_DATA_URL (RouteLLM's files) and LMROUTE_PROMPTS_URL (Arena-Hard).",
    )
    p.add_argument("--to", default="lmroute-data", metavar="DIR", help="the folder (default: ./lmroute-data)")
    p.add_argument(
        "--only",
        nargs="+",
        action="extend",
        metavar="PART",
        help="only these parts: mmlu, gsm8k, mt-bench (or routellm-evals for the three), arena-hard "
        "(default: all)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Pull the parts and say what the folder holds."""
    from pathlib import Path

    from lmroute.cli._output import check_output, note
    from lmroute.data.download import n_files
    from lmroute.data.pull import CHECKSUMS, MANIFEST, pull

    check_output(Path(args.to).expanduser(), folder=True)  # before the downloads, as pull reads it
    result = pull(args.to, only=args.only)
    note(
        f"{result.folder}: {', '.join(result.parts)} ({n_files(result.files)}, "
        f"{result.downloaded} downloaded now); checksums in {CHECKSUMS}, sources and licences in "
        f"{MANIFEST}. Use it with "
        f"--data-dir {result.folder} or LMROUTE_DATA_DIR={result.folder}"
    )
    return 0
