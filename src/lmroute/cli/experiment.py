"""``lmroute experiment``: train and evaluate routers under named protocols, from a YAML file.

A file with ``kind: pair-transfer`` is the pair-transfer experiment instead
(:mod:`lmroute.workflows.pair_transfer`): routers evaluated on model pairs they were not trained on.
One with ``kind: similarity-vs-apgr`` is the leave-one-source-out run that sets each held-out
source's similarity score beside the router's APGR on it (:mod:`lmroute.workflows.source_transfer`).
``kind: n-models`` and ``kind: onboarding-curve`` are the N-model runs (:mod:`lmroute.workflows.kinds`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from lmroute.cli._options import Subparsers, add_data_dir_option, add_quiet_option, data_dir
from lmroute.cli._output import check_output, wrote


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``experiment`` command and its options."""
    p = subparsers.add_parser("experiment", help="train and evaluate routers under named protocols")
    p.add_argument("config", help="experiment YAML file (see experiments/)")
    p.add_argument(
        "--out",
        default="results/experiment",
        help="folder for results.md, .json, plots (default: results/experiment)",
    )
    add_quiet_option(p)
    # no --data-url: the runs read public files through many loaders that take no download URL, so
    # it was accepted and ignored; $LMROUTE_DATA_URL, which they read, still points the download
    add_data_dir_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the experiment and write its results to ``--out``."""
    from lmroute._yaml import yaml_kind
    from lmroute.workflows import pair_transfer, source_transfer
    from lmroute.workflows.experiment import load_experiment_config, run_experiment, write_experiment
    from lmroute.workflows.kinds import load_kind_config

    check_output(args.out, folder=True)  # before the runs, not when their results are written
    # Each other kind: (read its file, run it, its markdown table, write its results).
    kinds: dict[str, tuple[Callable[..., Any], ...]] = {
        pair_transfer.KIND: (
            pair_transfer.load_pair_transfer_config,
            pair_transfer.run_pair_transfer,
            pair_transfer.pair_transfer_markdown,
            pair_transfer.write_pair_transfer,
        ),
        source_transfer.KIND: (
            source_transfer.load_similarity_vs_apgr_config,
            source_transfer.run_similarity_vs_apgr,
            source_transfer.similarity_vs_apgr_markdown,
            source_transfer.write_similarity_vs_apgr_run,
        ),
    }
    kind = kinds.get(yaml_kind(args.config) or "")
    if kind is not None:
        load, run_kind, markdown, write = kind
        outcome = run_kind(load(args.config), data_dir=data_dir(args), progress=not args.quiet)
        print(markdown(outcome))
        for path in write(outcome, args.out):
            wrote(path)
        return 0
    other_kind = load_kind_config(args.config)
    if other_kind is not None:
        return _run_kind(args, other_kind)
    config = load_experiment_config(args.config)
    result = run_experiment(config, data_dir=data_dir(args), progress=not args.quiet)
    for path in write_experiment(result, args.out):
        wrote(path)
    return 0


def _run_kind(args: argparse.Namespace, config) -> int:
    """An experiment file of ``kind: n-models`` (:mod:`lmroute.workflows.n_models`) or
    ``kind: onboarding-curve`` (:mod:`lmroute.workflows.onboard_curve`)."""
    from pathlib import Path

    from lmroute.data.public import data_folders
    from lmroute.exceptions import ConfigError
    from lmroute.workflows.n_models import run_n_model_experiment, write_n_model_experiment

    folders = data_folders(data_dir(args))  # --data-dir, then $LMROUTE_DATA_DIR
    if not folders:
        raise ConfigError("N-model experiments read the shared data: give --data-dir or set LMROUTE_DATA_DIR")
    folder = folders[0][0]
    if config.kind == "onboarding-curve":
        from lmroute.workflows.onboard_curve import run_onboard_curve, write_onboard_curve

        curve = run_onboard_curve(config, data_dir=folder, config_dir=Path(args.config).parent)
        for path in write_onboard_curve(curve, args.out):
            wrote(path)
        return 0
    result = run_n_model_experiment(config, data_dir=folder, config_dir=Path(args.config).parent)
    for path in write_n_model_experiment(result, args.out):
        wrote(path)
    return 0
