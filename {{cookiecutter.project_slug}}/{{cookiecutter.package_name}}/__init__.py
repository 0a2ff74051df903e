"""Reproducible recommender pipeline: a pure core (data, validation, models, training, evaluation, artifacts)
and thin Prefect flows around it (`flows/`)."""

__version__ = "0.1.0"
