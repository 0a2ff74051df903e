"""What every section shares: the package's names, the model and source names a config may use, the metric
names evaluation reports, and the frozen base class of a section."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

PACKAGE = __name__.split(".")[0]
# The models a config can name: the one list the settings, the CLI's choices and `models.MODELS` follow.
ModelName = Literal["popularity", "itemknn", "ease", "bpr", "ials"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
DataSource = Literal["synthetic", "movielens", "file", "snapshot"]
ENV_PREFIX = f"{PACKAGE.upper()}_"

# What `evaluation.evaluate` computes at each K, named `<metric>@<K>` (e.g. ndcg@10): per-user metrics, then
# catalogue-level ones. Defined here, not in evaluation.py (which takes these), because that module imports
# torch, seconds that checking a config must not pay.
PER_USER_METRICS = ("ndcg", "recall", "hitrate", "precision", "map", "mrr", "novelty")
CATALOGUE_METRICS = ("coverage",)


class _Section(BaseModel):
    """A settings section: unknown keys are refused (a typo must not pass silently) and values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
