"""Drift and decay checks (monitoring.py) and the batches `simulate` replays (simulation.py): the pure core,
no Prefect. Evidently runs for real on features of the synthetic data."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import pytest

from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.evaluation import evaluate
from {{ cookiecutter.package_name }}.monitoring import check, event_features, new_events
from {{ cookiecutter.package_name }}.settings import ModelConfig, MonitorConfig, SyntheticConfig
from {{ cookiecutter.package_name }}.simulation import plan_batches, shift
from {{ cookiecutter.package_name }}.training import train

pytestmark = pytest.mark.unit

EVENTS = generate(SyntheticConfig(n_users=600, n_items=300, n_interactions=30_000, days=60), seed=3).sort(
    "timestamp", "user_id", "item_id"
)
CFG = MonitorConfig(min_new_events=500, max_rows=20_000, users_for_predictions=200)


@pytest.fixture(scope="module")
def windows() -> tuple[pl.DataFrame, pl.DataFrame, object, dict[str, float]]:
    """The champion's training data (first 70%), the next 15% as new events, an EASE champion and its
    metrics as recorded on that next window (what `registered` holds in the registry)."""
    cut, cut2 = int(EVENTS.height * 0.7), int(EVENTS.height * 0.85)
    reference, current = EVENTS.head(cut), EVENTS.slice(cut, cut2 - cut)
    model = train(ModelConfig(name="ease"), reference, seed=0)
    registered = evaluate(model, reference, current, [10], as_served=True).summary
    return reference, current, model, registered


def test_same_distribution_is_not_drift(windows) -> None:
    reference, current, model, registered = windows
    result = check(reference, current, model, registered, "ndcg@10", CFG, seed=0)
    assert not result.drifted, result.reasons
    assert result.reasons[0].startswith("within thresholds")
    assert {c["column"] for c in result.event_columns} == {
        "user_history", "item_popularity", "rating", "new_user", "new_item", "hour_of_day", "day_of_week"
    }  # fmt: skip
    assert {c["column"] for c in result.prediction_columns} == {"score", "recommended_item_popularity"}
    assert result.event_drift_share < CFG.drift_share
    assert result.performance["decay"] == pytest.approx(0.0, abs=1e-9)


def test_shift_to_the_long_tail_at_night_is_drift(windows, tmp_path) -> None:
    reference, current, model, registered = windows
    shifted = shift(current, reference)
    result = check(reference, shifted, model, registered, "ndcg@10", CFG, seed=0)
    assert result.drifted
    drifted = {c["column"] for c in result.event_columns if c["drifted"]}
    assert {"item_popularity", "hour_of_day"} <= drifted
    assert result.reasons[0].startswith("interaction data drifted")
    # The champion ranks the shifted events far worse than when it was registered: decay too.
    assert result.performance["decay"] > CFG.max_decay
    assert any("fell from" in r for r in result.reasons)
    # The Evidently reports are real HTML files, one per comparison; the markdown names every column.
    paths = result.save_html(tmp_path)
    assert set(paths) == {"events", "predictions"}
    assert all(p.stat().st_size > 10_000 and "<html" in p.read_text()[:2_000].lower() for p in paths.values())
    assert "| item_popularity |" in result.markdown() and "drift or decay" in result.markdown()


def test_decay_alone_is_reported(windows) -> None:
    reference, current, model, registered = windows
    inflated = {"ndcg@10": registered["ndcg@10"] + 0.2}
    result = check(reference, current, model, inflated, "ndcg@10", CFG, seed=0)
    assert result.drifted and len(result.reasons) == 1 and "ndcg@10 fell from" in result.reasons[0]


def test_too_few_new_events_is_not_judged(windows) -> None:
    reference, current, model, registered = windows
    result = check(reference, current.head(100), model, registered, "ndcg@10", CFG, seed=0)
    assert not result.drifted and "not judged" in result.reasons[0]
    assert result.event_columns == [] and result.performance == {}


def test_same_inputs_same_result(windows) -> None:
    reference, current, model, registered = windows
    first = check(reference, current, model, registered, "ndcg@10", CFG, seed=5).to_dict()
    second = check(reference, current, model, registered, "ndcg@10", CFG, seed=5).to_dict()
    assert first == second


def _champion_on(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, object, dict[str, float]]:
    """As the `windows` fixture, on other events: 70% reference, next 15% current, EASE, its metrics."""
    ordered = events.sort("timestamp", "user_id", "item_id")
    cut, cut2 = int(ordered.height * 0.7), int(ordered.height * 0.85)
    reference, current = ordered.head(cut), ordered.slice(cut, cut2 - cut)
    model = train(ModelConfig(name="ease"), reference, seed=0)
    return reference, current, model, evaluate(model, reference, current, [10], as_served=True).summary


@pytest.mark.parametrize("seed", [1, 2])
def test_stationary_redraw_is_not_drift(seed: int) -> None:
    # The timestamps dealt out to the events at random: every window is exchangeable with every other one.
    timestamps = np.random.default_rng(seed).permutation(EVENTS.get_column("timestamp").to_numpy())
    reference, current, model, registered = _champion_on(
        EVENTS.with_columns(pl.Series("timestamp", timestamps))
    )
    result = check(reference, current, model, registered, "ndcg@10", MonitorConfig(), seed=seed)
    assert not result.drifted, result.reasons
    # An hour of new events (a few dozen users) is noisier: the thresholds rise to the noise floor.
    # (Its decay is not judged here: ndcg@10 on 600 events against the value on 4,500 is lower by size alone.)
    hour = check(reference, current.head(600), model, registered, "ndcg@10", MonitorConfig(), seed=seed)
    assert hour.event_drift_share == 0.0 and hour.prediction_drift_share == 0.0, hour.reasons
    assert all(c["threshold"] > MonitorConfig().thresholds[c["column"]] for c in hour.event_columns)


def _new_users(current: pl.DataFrame, reference: pl.DataFrame) -> pl.DataFrame:
    """A tenth of the events by users nobody has seen (ids past every known one)."""
    users = current.get_column("user_id").unique().sort()
    replaced = users.head(int(users.len() * 0.1))
    offset = int(max(reference["user_id"].max(), current["user_id"].max()))
    return current.with_columns(
        pl.when(pl.col("user_id").is_in(replaced.implode()))
        .then(pl.col("user_id") + offset)
        .otherwise(pl.col("user_id"))
        .alias("user_id")
    )


def _lower_ratings(current: pl.DataFrame, reference: pl.DataFrame) -> pl.DataFrame:
    """Every other event rated one star lower (at least 1)."""
    lower = pl.int_range(pl.len()) % 2 == 0
    return current.with_columns(
        pl.when(lower).then((pl.col("rating") - 1).clip(lower_bound=1)).otherwise("rating").alias("rating")
    )


@pytest.mark.parametrize(
    ("change", "moved"), [(_new_users, {"new_user", "user_history"}), (_lower_ratings, {"rating"})]
)
def test_clear_shift_at_the_same_hours_is_drift(windows, change, moved: set[str]) -> None:
    reference, current, model, registered = windows
    result = check(reference, change(current, reference), model, registered, "ndcg@10", CFG, seed=0)
    assert result.drifted and result.reasons[0].startswith("interaction data drifted"), result.reasons
    assert {c["column"] for c in result.event_columns if c["drifted"] and c["counted"]} == moved


def test_a_change_of_hours_alone_is_not_drift(windows) -> None:
    # Every session moved to Saturday 03:00 UTC (the Unix epoch is a Thursday): only the time of day and the
    # day of week change. They are reported as drifted but are context: no drift, no retrain.
    reference, current, model, registered = windows
    saturday_night = pl.col("timestamp") - pl.col("timestamp") % 604_800 + 2 * 86_400 + 3 * 3_600
    moved = current.with_columns(saturday_night.alias("timestamp"))
    result = check(reference, moved, model, registered, "ndcg@10", CFG, seed=0)
    assert not result.drifted, result.reasons
    context = {c["column"]: c for c in result.event_columns if not c["counted"]}
    assert set(context) == {"hour_of_day", "day_of_week"}
    assert not any(c["counted"] for c in result.prediction_columns)
    assert all(c["drifted"] for c in context.values())
    assert result.event_drift_share == 0.0
    assert "| hour_of_day |" in result.markdown() and "(context, not counted)" in result.markdown()


def test_new_events_are_those_after_the_reference() -> None:
    reference = EVENTS.head(1_000)
    later = new_events(EVENTS, reference)
    assert later.height == EVENTS.filter(pl.col("timestamp") > reference["timestamp"].max()).height
    assert later["timestamp"].min() > reference["timestamp"].max()


def test_event_features_read_against_what_came_before() -> None:
    before = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 10], "timestamp": [0, 1, 2]})
    events = pl.DataFrame(
        {"user_id": [1, 3], "item_id": [10, 12], "timestamp": [3 * 3_600, 86_400 * 4 + 5 * 3_600]}
    )
    features = event_features(events, before)
    assert features["new_user"].to_list() == ["no", "yes"]
    assert features["new_item"].to_list() == ["no", "yes"]
    assert features["hour_of_day"].to_list() == ["3", "5"]
    assert features["user_history"][1] == 0.0 and features["user_history"][0] > 0
    assert "rating" not in features.columns  # no rating in the events: no rating feature


def test_plan_batches_keeps_every_event_in_time_order() -> None:
    batches = plan_batches(EVENTS, n_batches=4)
    assert [b.kind for b in batches] == ["initial", "normal", "corrupt", "normal", "normal", "shifted"]
    names = ["00-initial", "01-normal", "02-corrupt", "03-normal", "04-normal", "05-shifted"]
    assert [b.name for b in batches] == [f"{name}.csv" for name in names]
    frames = [pl.read_csv(io.BytesIO(b.data)) for b in batches]
    assert [f.height for f in frames] == [b.rows for b in batches]
    clean = [f for f, b in zip(frames, batches, strict=True) if b.kind in {"initial", "normal"}]
    # Initial + normal batches + the shifted one's source cover the dataset once, each batch after the last.
    assert sum(f.height for f in clean) + batches[-1].rows <= EVENTS.height
    for earlier, later in zip(clean, clean[1:], strict=False):
        assert earlier["timestamp"].max() <= later["timestamp"].min()
    # The corrupt batch is the next normal one with timestamps in milliseconds.
    assert frames[2]["timestamp"].to_list() == [t * 1000 for t in frames[3]["timestamp"].to_list()]
    # The shifted batch happens at 03:00 UTC.
    assert set(((frames[-1]["timestamp"] % 86_400) // 3_600).to_list()) == {3}


def test_plan_batches_needs_three_later_batches() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        plan_batches(EVENTS, n_batches=2)


def test_shift_swaps_popular_and_long_tail_items() -> None:
    before = EVENTS.head(20_000)
    counts = before.group_by("item_id").len()
    batch = EVENTS.slice(20_000, 3_000)
    moved = shift(batch, before)
    popularity = dict(counts.iter_rows())
    mean_before = sum(popularity.get(i, 0) for i in batch["item_id"]) / batch.height
    mean_after = sum(popularity.get(i, 0) for i in moved["item_id"]) / moved.height
    assert mean_after < 0.6 * mean_before
    assert moved.select(pl.struct("user_id", "item_id").is_unique().all()).item()
