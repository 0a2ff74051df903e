"""Serving per dataset, against a real (temporary) Prefect server: each dataset has its own champion and a
second dataset's first model is judged against popularity; once promoted, a version is served by a refit on
its whole snapshot, so nobody is recommended an item they already have; an unknown user gets the snapshot's
most popular items; titles come from MovieLens' item file or `data.items`; the monitor watches the refit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, open_store
from {{ cookiecutter.package_name }}.artifacts import runs as runs_catalog
from {{ cookiecutter.package_name }}.artifacts.landing import advance_snapshot
from {{ cookiecutter.package_name }}.artifacts.registry import CHAMPION, open_registry
from {{ cookiecutter.package_name }}.artifacts.verify import verify_store
from {{ cookiecutter.package_name }}.catalogue import item_titles
from {{ cookiecutter.package_name }}.cli import app, load_entrypoint
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.serving import load_model, recommend_all
from {{ cookiecutter.package_name }}.settings import Settings, SyntheticConfig, load_settings

pipeline = load_entrypoint("flows/pipeline.py:pipeline")
batch_recommend = load_entrypoint("flows/recommend.py:batch_recommend")
monitor = load_entrypoint("flows/monitoring.py:monitor")

pytestmark = pytest.mark.usefixtures("prefect_server")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMALL = ["data.synthetic.n_users=300", "data.synthetic.n_items=200", "data.synthetic.n_interactions=6000"]


def _run(settings: Settings, model: str) -> dict[str, Any]:
    resolved = settings.resolved()
    resolved["model"] = {**resolved["model"], "name": model}
    state = pipeline(resolved, return_state=True)
    assert state.is_completed(), state.message
    return state.result()


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def _sets(pairs: list[str]) -> list[str]:
    return [part for pair in pairs for part in ("--set", pair)]


def _seen(frame: pl.DataFrame, snapshot: pl.DataFrame) -> pl.DataFrame:
    """The recommended (user, item) pairs the user already has in the snapshot."""
    return frame.join(snapshot.select("user_id", "item_id"), on=["user_id", "item_id"], how="semi")


def _most_popular(snapshot: pl.DataFrame, k: int) -> list[int]:
    counts = snapshot.group_by("item_id").agg(pl.col("user_id").n_unique().alias("users"))
    return counts.sort(["users", "item_id"], descending=[True, False]).head(k).get_column("item_id").to_list()


@pytest.fixture
def rated_file(tmp_path: Path) -> list[str]:
    """A second dataset: a ratings file (other users and items than the synthetic default) and a catalogue
    of its items, `;`-separated with the columns `id` and `name`; the settings that read both."""
    events = generate(SyntheticConfig(n_users=200, n_items=150, n_interactions=4_000), seed=7)
    events = events.with_columns(pl.col("user_id") + 10_000, pl.col("item_id") + 5_000)
    events.write_csv(tmp_path / "ratings.csv")
    items = events.select(pl.col("item_id").unique().sort().alias("id"))
    items.with_columns(pl.format("Film {}, the sequel", "id").alias("name")).write_csv(
        tmp_path / "catalogue.csv", separator=";"
    )
    return [
        "data.source=file",
        f"data.path={tmp_path / 'ratings.csv'}",
        f"data.items.path={tmp_path / 'catalogue.csv'}",
        "data.items.id=id",
        "data.items.title=name",
        "data.items.csv_separator=;",
    ]


def test_two_datasets_in_one_registry_each_get_their_own_champion_and_recommend_serves_each(
    small_settings: Settings, rated_file: list[str]
) -> None:
    synthetic = _run(small_settings, "ease")["promotion"]
    assert synthetic["promoted"] and synthetic["dataset"] == "synthetic"
    other_settings = small_settings.updated(_nested(rated_file))
    # The second dataset's first model meets popularity, not the other dataset's champion.
    other = _run(other_settings, "ease")["promotion"]
    assert other["dataset"] == "ratings" and other["version"] == 2 and other["promoted"]
    assert other["decision"]["reference"] == "popularity baseline" and other["decision"]["champion"] is None

    registry = open_registry(small_settings.registry, small_settings.storage)
    assert registry.datasets() == ["ratings", "synthetic"]
    assert registry.get(CHAMPION, "synthetic").version == 1 and registry.get(CHAMPION, "ratings").version == 2
    assert [m.to_version for m in registry.history(CHAMPION, dataset="synthetic")] == [1]

    store_set = [f"storage.uri={small_settings.storage.uri}"]
    synthetic_user = str(store_user(small_settings, 1))
    shown = _cli("recommend", "--user", synthetic_user, "-k", "5", *_sets(store_set + SMALL))
    assert shown.exit_code == 0, shown.output
    assert "dataset synthetic: champion v1 (ease, refit on the whole snapshot)" in shown.output
    assert "title" not in shown.output  # synthetic data has no catalogue

    other_user = str(store_user(other_settings, 2))
    shown = _cli("recommend", "--user", other_user, "-k", "5", *_sets(store_set + rated_file))
    assert shown.exit_code == 0, shown.output
    assert "dataset ratings: champion v2" in shown.output and "Film 50" in shown.output
    assert shown.output.count(", the sequel") == 5  # a title per recommendation, commas and all

    listing = _cli("models", "list", *_sets(store_set))
    assert listing.exit_code == 0 and "ratings" in listing.output and "synthetic" in listing.output
    history = _cli("models", "history", *_sets(store_set + rated_file))
    assert "dataset ratings:" in history.output and " v1 " not in history.output, history.output
    # A version of one dataset is never promoted over another's champion, even by hand.
    refused = _cli("models", "promote", "1", "--reason", "wrong data", *_sets(store_set + rated_file))
    assert refused.exit_code == 2 and "version 1 is a model of dataset synthetic" in refused.output


def store_user(settings: Settings, version: int) -> int:
    """A user of the version's snapshot."""
    registry, store = open_registry(settings.registry, settings.storage), open_store(settings.storage)
    snapshot = store.get_frame(ArtifactRef(**registry.get(version).artifact("snapshot")))
    return int(snapshot.get_column("user_id").min())


def test_after_promotion_nobody_is_recommended_an_item_they_have_and_unknown_users_get_popularity(
    small_settings: Settings,
) -> None:
    run = _run(small_settings, "ease")
    registry, store = (
        open_registry(small_settings.registry, small_settings.storage),
        open_store(small_settings.storage),
    )
    champion = registry.get(CHAMPION, "synthetic")
    snapshot = store.get_frame(ArtifactRef(**champion.artifact("snapshot")))
    served = champion.serving
    assert served is not None and served["evaluated_model"] == champion.model_id
    assert served["model"]["id"] != champion.model_id and served["interactions"] == snapshot.height
    assert run["promotion"]["serving"] == served["model"]
    # The run that made the evaluated model links the served one (lineage, `models rebuild`).
    assert runs_catalog.read_status(store, run["run_id"])["registry"]["serving"] == served
    # `verify` checks the served model's bytes like every other object the registry names.
    assert verify_store(store, registry).ok
    served_file = Path(store.root) / store.relative(served["model"]["uri"])
    whole = served_file.read_bytes()
    served_file.write_bytes(whole[:-1] + bytes([whole[-1] ^ 1]))
    damaged = verify_store(store, registry).problems
    assert any("serving model" in problem.path for problem in damaged), damaged
    served_file.write_bytes(whole)

    batch = batch_recommend(small_settings.resolved(), k=10)
    frame = store.get_frame(ArtifactRef(**batch["ref"]))
    users = snapshot.get_column("user_id").n_unique()
    assert batch["refit"] and frame.get_column("user_id").n_unique() == users
    assert _seen(frame, snapshot).height == 0
    # The evaluated model, trained on the train split, would recommend held-out items back.
    _, evaluated = load_model(registry, store, CHAMPION, "synthetic", served=False)
    assert _seen(recommend_all(evaluated, 10), snapshot).height > 0

    known = snapshot.get_column("user_id").unique().sort().head(3).to_list()
    args = ["recommend", "-k", "5", "--user", "987654321", *(f"--user={u}" for u in known)]
    stored = _sets([f"storage.uri={small_settings.storage.uri}", *SMALL])
    shown = _cli(*args, *stored)
    assert shown.exit_code == 0, shown.output
    assert "note: 987654321 unknown to version 1 (no events in the snapshot)" in shown.output
    listed = _cli(*args, *stored, "--json")
    assert listed.exit_code == 0, listed.output
    answer = json.loads(listed.stdout)
    assert answer["unknown_users"] == [987654321] and answer["refit"] and answer["version"] == 1
    rows = [(r["user_id"], r["rank"], r["item_id"]) for r in answer["recommendations"]]
    popular = [item for user, _, item in rows if user == 987654321]
    assert popular == _most_popular(snapshot, 5)
    for user in known:
        items = [item for u, _, item in rows if u == user]
        had = snapshot.filter(pl.col("user_id") == user).get_column("item_id").to_list()
        assert len(items) == 5 and not set(items) & set(had)

    # The judge keeps to the evaluated model: a second model on the same split meets the champion's own
    # registered score (a refit, having seen the test events, would score differently).
    second = _run(small_settings, "itemknn")["promotion"]["decision"]
    metric = small_settings.evaluation.primary_metric
    assert second["reference"] == "champion v1"
    assert second["comparison"]["mean_b"] == pytest.approx(champion.metrics[metric], abs=1e-9)

    # The monitor watches the evidence the champion was promoted on: the evaluated model's training split
    # against every event after it (its test period, then the 700 that arrived later), none of which it saw.
    last = int(snapshot.get_column("timestamp").max())
    later = snapshot.sample(700, seed=3).with_columns(timestamp=last + pl.int_range(1, 701, dtype=pl.Int64))
    grown = store.put_frame(pl.concat([snapshot, later.select(snapshot.columns)]), kind="snapshot")
    advance_snapshot(store, {"snapshot": grown.model_dump()})
    checked = monitor(small_settings.resolved())
    assert checked["served_by"] == "refit" and checked["dataset"] == "synthetic"
    train, test = (store.get_frame(ArtifactRef(**champion.artifact(name))) for name in ("train", "test"))
    assert (checked["reference_events"], checked["current_events"]) == (train.height, test.height + 700)


def test_ml100k_serves_unseen_items_with_titles(tmp_path: Path, ml100k: Path) -> None:
    data = ["data.source=movielens", f"data.path={ml100k}", f"storage.uri={tmp_path / 'artifacts'}"]
    # A random split: EASE clearly beats popularity there (the temporal cut leaves few users to judge on).
    # No latency budget: what is served is the point here, and a loaded machine can rank slowly.
    settings = load_settings(
        [PROJECT_ROOT / "configs" / "default.yaml"], _nested([*data, "split.strategy=random"])
    ).updated({"promotion": {"latency_budget_ms": None}})
    run = _run(settings, "ease")
    promotion = run["promotion"]
    assert promotion["promoted"], promotion.get("decision", {}).get("reason")
    assert promotion["dataset"] == "ml-100k"
    registry, store = open_registry(settings.registry, settings.storage), open_store(settings.storage)
    champion = registry.get(CHAMPION, "ml-100k")
    snapshot = store.get_frame(ArtifactRef(**champion.artifact("snapshot")))
    assert champion.serving is not None and champion.serving["interactions"] == 100_000

    batch = batch_recommend(settings.resolved(), k=10)
    frame = store.get_frame(ArtifactRef(**batch["ref"]))
    assert frame.get_column("user_id").n_unique() == 943 and _seen(frame, snapshot).height == 0
    assert batch["titles"] and frame.get_column("title").null_count() == 0

    where = ["--source", "movielens", "--path", str(ml100k), *_sets(data[2:])]  # as `run` takes them
    shown = _cli("recommend", "--user", "1", "-k", "10", *where)
    assert shown.exit_code == 0, shown.output
    assert "dataset ml-100k: champion v1 (ease, refit on the whole snapshot)" in shown.output
    titles = item_titles(settings.data)
    assert titles is not None
    mine = frame.filter(pl.col("user_id") == 1).get_column("item_id").to_list()
    wanted = titles.filter(pl.col("item_id").is_in(mine)).get_column("title").to_list()
    assert len(wanted) == 10 and all(title[:20] in shown.output for title in wanted)


def _nested(pairs: list[str]) -> dict[str, Any]:
    """`a.b.c=v` settings as the nested mapping `updated` takes."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
