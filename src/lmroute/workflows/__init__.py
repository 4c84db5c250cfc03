"""Workflows that orchestrate data, the registry's routers and evaluation.

``train`` (:func:`~lmroute.workflows.train.train_router`: sources in, a saved router directory
out), ``experiment`` (:func:`~lmroute.workflows.experiment.run_experiment`: train and evaluate
routers under the ``zero-shot`` and ``gold-1500`` protocols, its YAML config and its outputs),
``pair_transfer`` (:func:`~lmroute.workflows.pair_transfer.run_pair_transfer`: routers evaluated
on model pairs they were not trained on) and ``similarity``
(:func:`~lmroute.workflows.similarity.data_similarity`: how much prompts look like training data).
"""
