"""Workflows that orchestrate data, the registry's routers and evaluation.

``train`` (:func:`~lmroute.workflows.train.train_router`: sources in, a saved router directory
out), ``experiment`` (:func:`~lmroute.workflows.experiment.run_experiment`: train and evaluate
routers under the ``zero-shot`` and ``gold-1500`` protocols, its YAML config and its outputs).
"""
