"""What is trained and how: the model and its hyper-parameters (`model`), how training reports and
checkpoints (`training`), and hyper-parameter sweeps (`sweep`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import ModelName, _Section


class PopularityConfig(_Section):
    """`model.popularity`: nothing to set; a section all the same, so every model is configured alike."""


class EASEConfig(_Section):
    """`model.ease`: the ridge penalty (or candidates to pick it from) and the scoring batch."""

    l2: float = Field(250.0, gt=0, description="Ridge penalty lambda on the item-item weights.")
    l2_search: list[float] = Field(
        default_factory=list,
        description="Candidates for l2, picked by NDCG@10 on an inner 90/10 split of the training data.",
    )
    batch_size: int = Field(1_024, gt=0, description="Users scored per batch.")


class ItemKNNConfig(_Section):
    """`model.itemknn`: how many neighbours each item keeps, and the shrinkage of rare co-occurrences."""

    neighbours: int = Field(100, gt=0, description="Most similar items kept per item.")
    shrink: float = Field(
        0.0, ge=0, description="Added to the cosine denominator: damps rare co-occurrences."
    )


class IALSConfig(_Section):
    """`model.ials`: factors, passes, confidence and regularisation of the alternating least squares."""

    factors: int = Field(64, gt=0)
    iterations: int = Field(15, gt=0, description="Alternating passes (users, then items).")
    alpha: float = Field(10.0, gt=0, description="Extra confidence of an observed pair.")
    regularization: float = Field(60.0, ge=0, description="L2 penalty lambda on the factors.")
    cg_steps: int = Field(3, gt=0, description="Conjugate-gradient steps per solve.")


class BPRConfig(_Section):
    """`model.bpr`: factors, epochs, the Adam step and batch, and early stopping (off by default)."""

    factors: int = Field(64, gt=0)
    epochs: int = Field(50, gt=0)
    learning_rate: float = Field(0.01, gt=0, description="Adam step size.")
    weight_decay: float = Field(0.01, ge=0, description="L2 penalty on the embeddings of each triple.")
    batch_size: int = Field(4_096, gt=0, description="Triples per optimiser step.")
    # Off by default: on ml-100k (random 80/20) the held-out hit rate peaks near epoch 12, while test NDCG@10
    # keeps rising to epoch 50 (0.350 stopped early, 0.387 after 50 epochs on all pairs).
    patience: int = Field(
        0, ge=0, description="Epochs without validation improvement before stopping; 0: off."
    )
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="Pairs held out to decide when to stop.")


class ModelConfig(_Section):
    """`model`: which recommender to train (`name`), and one section of hyper-parameters per model."""

    name: ModelName = "ease"
    popularity: PopularityConfig = PopularityConfig()
    itemknn: ItemKNNConfig = ItemKNNConfig()
    ease: EASEConfig = EASEConfig()
    bpr: BPRConfig = BPRConfig()
    ials: IALSConfig = IALSConfig()


class TrainingConfig(_Section):
    """How training reports and checkpoints; none of it changes the weights (so not in the fingerprint)."""

    progress_bar: bool = Field(True, description="An epoch progress bar on a terminal (never in a log file).")
    checkpoint_every: int = Field(0, ge=0, description="Save the model every N epochs; 0: off.")
    checkpoint_dir: str = Field("checkpoints", description="Local directory for epoch checkpoints.")


class SweepTrials(_Section):
    """One model of a sweep and the values to try for its parameters (every combination is a trial)."""

    model: ModelName
    params: dict[str, list[Any]] = Field(default_factory=dict)


class SweepConfig(_Section):
    """`sweep`: trials over models and hyper-parameters on one split, in parallel on a Dask cluster."""

    # A list, not a mapping: an experiment file that sets `grid` replaces the whole grid (mappings from
    # several config files are merged key by key, so a default model could never be dropped).
    grid: list[SweepTrials] = Field(
        default_factory=lambda: [
            SweepTrials(model="ease", params={"l2": [100.0, 250.0, 500.0]}),
            SweepTrials(model="ials", params={"factors": [32, 64], "regularization": [30.0, 60.0]}),
            SweepTrials(model="itemknn", params={"neighbours": [50, 100]}),
        ],
        min_length=1,
        description="Models and parameter values; each combination is a trial, laid over `model`.",
    )
    dask_address: str | None = Field(
        None, description="A running Dask scheduler (tcp://host:8786); null: a local cluster for the sweep."
    )
    workers: int = Field(2, gt=0, description="Worker processes of the local cluster.")
    threads_per_worker: int = Field(1, gt=0, description="Task threads and torch threads per worker.")
    register_best: bool = Field(True, description="Register the best trial's model as the challenger.")
