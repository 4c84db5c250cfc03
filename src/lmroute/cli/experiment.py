"""``lmroute experiment``: train and evaluate routers under named protocols, from a YAML file.

A file with ``kind: pair-transfer`` is the pair-transfer experiment instead
(:mod:`lmroute.workflows.pair_transfer`): routers evaluated on model pairs they were not trained on.
One with ``kind: similarity-vs-apgr`` is the leave-one-source-out run that sets each held-out
source's similarity score beside the router's APGR on it (:mod:`lmroute.workflows.source_transfer`).
"""

from __future__ import annotations

import argparse

from lmroute.cli._options import Subparsers, add_data_options, add_quiet_option, data_dir
from lmroute.cli._output import wrote


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``experiment`` command and its options."""
    p = subparsers.add_parser("experiment", help="train and evaluate routers under named protocols")
    p.add_argument("config", help="experiment YAML file (see experiments/)")
    p.add_argument("--out", default="results/experiment", help="folder for results.md, .json, plots")
    add_quiet_option(p)
    add_data_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the experiment and write its results to ``--out``."""
    from lmroute.workflows import pair_transfer, source_transfer
    from lmroute.workflows.experiment import load_experiment_config, run_experiment, write_experiment

    if pair_transfer.is_pair_transfer(args.config):
        transfer = pair_transfer.load_pair_transfer_config(args.config)
        outcome = pair_transfer.run_pair_transfer(transfer, data_dir=data_dir(args), progress=not args.quiet)
        print(pair_transfer.pair_transfer_markdown(outcome))
        for path in pair_transfer.write_pair_transfer(outcome, args.out):
            wrote(path)
        return 0
    if source_transfer.is_similarity_vs_apgr(args.config):
        loso = source_transfer.load_similarity_vs_apgr_config(args.config)
        found = source_transfer.run_similarity_vs_apgr(loso, data_dir=data_dir(args), progress=not args.quiet)
        print(source_transfer.similarity_vs_apgr_markdown(found))
        for path in source_transfer.write_similarity_vs_apgr_run(found, args.out):
            wrote(path)
        return 0
    config = load_experiment_config(args.config)
    result = run_experiment(config, data_dir=data_dir(args), progress=not args.quiet)
    for path in write_experiment(result, args.out):
        wrote(path)
    return 0
