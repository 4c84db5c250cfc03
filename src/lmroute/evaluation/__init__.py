"""Evaluation: pure metric functions, the evaluator, reports and plots."""
