"""Evaluation: cross-validated accuracy of whole routes, above training and retrieval.

Each evaluation refits models on training folds (training) and answers held-out
prompts with them (retrieval), so it sits above both: the predictability
spectrum (:mod:`~hquery.evaluation.spectrum`), the routes side by side
(:mod:`~hquery.evaluation.compare`) and the recall tables of recorded models
(:mod:`~hquery.evaluation.recall`).
"""
