"""How a model is judged: what evaluation computes (`evaluation`), when a model replaces the champion
(`promotion`), and when the champion has drifted or decayed (`monitor`)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, PositiveInt, model_validator

from .base import CATALOGUE_METRICS, PER_USER_METRICS, _Section


def _check_evaluated(field: str, names: Sequence[str], evaluation: EvaluationConfig) -> None:
    known = evaluation.metrics()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"{field}: {', '.join(map(repr, unknown))} is not a metric evaluation computes with evaluation.k="
            f"{evaluation.k}; one of {', '.join(known)}"
        )


class EvaluationConfig(_Section):
    """`evaluation`: the cut-offs K, the metric promotion decides on, and the bootstrap's resamples."""

    k: list[PositiveInt] = Field(default_factory=lambda: [10, 20], min_length=1)
    primary_metric: str = Field("ndcg@10", description="<metric>@<K>, K one of `k`; promotion decides on it.")
    batch_size: int = Field(1_024, gt=0, description="Users ranked per batch during evaluation.")
    bootstrap_resamples: int = Field(1_000, ge=100, description="Resamples of users for the 95% intervals.")

    def metrics(self) -> list[str]:
        """Every metric name an evaluation with these settings reports."""
        return [f"{m}@{k}" for k in sorted(set(self.k)) for m in (*PER_USER_METRICS, *CATALOGUE_METRICS)]

    @model_validator(mode="after")
    def _primary_metric_is_evaluated(self) -> EvaluationConfig:
        # Checked here, not after training: a typo would otherwise fail once a model is already registered.
        _check_evaluated("evaluation.primary_metric", [self.primary_metric], self)
        return self


class PromotionConfig(_Section):
    """When a newly trained model may replace the champion (evaluated after each pipeline run)."""

    enabled: bool = Field(True, description="Register each run's model and decide on promotion.")
    margin: float = Field(
        0.0, ge=0, description="Required gain on evaluation.primary_metric over the champion (absolute)."
    )
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="The gain's paired-bootstrap interval at this level must clear `margin`.",
    )
    guards: dict[str, float] = Field(
        default_factory=lambda: {"coverage@10": 0.05},
        description="metric -> largest tolerated drop (absolute) against the champion.",
    )
    latency_budget_ms: float | None = Field(
        2_000.0, gt=0, description="Most milliseconds to rank top-K for 1,000 users; null: no budget."
    )
    manual_approval: bool = Field(
        False, description="Pause the flow for a person to approve in the Prefect UI before promoting."
    )
    approval_timeout_seconds: int = Field(3_600, gt=0)


_DRIFT_THRESHOLDS = {
    "user_history": 0.1,
    "item_popularity": 0.1,
    "rating": 0.1,
    "new_user": 0.1,
    "new_item": 0.1,
    "hour_of_day": 0.1,
    "day_of_week": 0.1,
    "score": 0.15,
    "recommended_item_popularity": 0.15,
}


class MonitorConfig(_Section):
    """Drift and decay checks of the champion (the `monitor` flow); see monitoring.py for the windows."""

    # One counted feature beyond its threshold: a real shift rarely moves many at once (a move to the long
    # tail moves item popularity alone), and the thresholds, not a share, keep noise out.
    drift_share: float = Field(
        0.2, gt=0, le=1, description="Share of drifted counted features (events or predictions): drift."
    )
    # Effect sizes (normed Wasserstein distance for numbers, Jensen-Shannon distance for categories), set by
    # benchmarks/drift.py: on stationary MovieLens 100K windows the largest score seen stays well below them.
    thresholds: dict[str, float] = Field(
        default_factory=lambda: dict(_DRIFT_THRESHOLDS),
        description="Per feature: the effect size from which it counts as drifted.",
    )
    # Small windows: a threshold is never below this many times sqrt(1/users + 1/users) of the two windows,
    # the chance difference of two samples whose draws are users rather than events (see monitoring.py).
    noise_allowance: float = Field(
        2.0, ge=0, description="Thresholds never below this x sqrt(1/users_before + 1/users_now)."
    )
    # Hour and day record session bursts, not taste; the prediction features compare the champion on users
    # it trained on with users it did not (see monitoring.py): reported, never counted.
    context_columns: list[str] = Field(
        default_factory=lambda: ["hour_of_day", "day_of_week", "score", "recommended_item_popularity"],
        description="Features reported but never counted towards drift.",
    )
    max_decay: float = Field(
        0.05, ge=0, description="Largest tolerated drop of the primary metric on new events (absolute)."
    )
    min_new_events: int = Field(500, ge=1, description="Fewer new events than this: nothing is judged.")
    max_rows: int = Field(20_000, ge=1_000, description="Events per window compared (a seeded sample).")
    users_for_predictions: int = Field(500, ge=10, description="Users whose top-10 is compared per window.")
