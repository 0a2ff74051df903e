"""The split's leakage check: every protocol's own splits pass it, a leaky split of each kind is caught, and
the pipeline refuses to train on one (the check stored, the run failed at split)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.artifacts import ArtifactStore
from {{ cookiecutter.package_name }}.artifacts.runs import find_run, list_runs, mermaid, run_statuses
from {{ cookiecutter.package_name }}.cli import app, load_entrypoint
from {{ cookiecutter.package_name }}.data.leakage import LeakageFound, check_split, ensure_no_leakage
from {{ cookiecutter.package_name }}.data.split import Split, split
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.settings import Settings, SplitConfig, SyntheticConfig

pytestmark = pytest.mark.unit

FRAME = generate(SyntheticConfig(n_users=200, n_items=150, n_interactions=4_000), seed=5)
PROTOCOLS = ("temporal", "random", "leave-last-out", "user-random")


def _parts(strategy: str) -> Split:
    return split(FRAME, SplitConfig(strategy=strategy, test_fraction=0.2), seed=5)


def _failed(train: pl.DataFrame, test: pl.DataFrame, strategy: str) -> list[str]:
    return [c.name for c in check_split(train, test, strategy).checks if not c.passed]


@pytest.mark.parametrize("strategy", PROTOCOLS)
def test_every_protocols_own_split_passes(strategy: str) -> None:
    parts = _parts(strategy)
    check = check_split(parts.train, parts.test, strategy)
    assert check.passed, check.summary()
    expected = {
        "temporal": ["disjoint", "before cut-off"],
        "random": ["disjoint"],
        "leave-last-out": ["disjoint", "last event"],
        "user-random": ["disjoint", "train kept"],
    }[strategy]
    assert [c.name for c in check.checks] == expected
    assert (check.train_rows, check.test_rows) == (parts.train.height, parts.test.height)
    ensure_no_leakage(check)  # does not raise


def test_an_event_in_both_parts_is_caught() -> None:
    train, test = _parts("random")
    leaky = pl.concat([train, test.head(3)])  # three test events also trained on
    check = check_split(leaky, test, "random")
    assert not check.passed and check.checks[0].detail == "3 event(s) in both parts"
    with pytest.raises(LeakageFound, match="the random split leaks: disjoint: 3 event"):
        ensure_no_leakage(check)


def test_a_train_event_after_the_cut_off_is_caught() -> None:
    train, test = _parts("temporal")
    # The latest test event moved to train: parts stay disjoint, but train now knows the future.
    latest = test.sort("timestamp").tail(1)
    moved = pl.concat([train, latest])
    rest = test.join(latest, on=["user_id", "item_id", "timestamp"], how="anti")
    assert _failed(moved, rest, "temporal") == ["before cut-off"]


def test_a_held_out_event_that_is_not_the_users_latest_is_caught() -> None:
    train, test = _parts("leave-last-out")
    user = test.get_column("user_id")[0]
    # Swap the user's test event with their earliest train event.
    held, first = test.filter(pl.col("user_id") == user), train.filter(pl.col("user_id") == user).head(1)
    swapped_train = pl.concat([train.join(first, on=train.columns, how="anti"), held])
    swapped_test = pl.concat([test.filter(pl.col("user_id") != user), first])
    assert _failed(swapped_train, swapped_test, "leave-last-out") == ["last event"]


def test_a_user_with_every_event_in_test_is_caught() -> None:
    train, test = _parts("user-random")
    user = test.get_column("user_id")[0]
    assert _failed(
        train.filter(pl.col("user_id") != user),
        pl.concat([test, train.filter(pl.col("user_id") == user)]),
        "user-random",
    ) == ["train kept"]


def test_a_row_repeated_in_the_source_is_one_event_on_one_side() -> None:
    doubled = pl.concat([FRAME, FRAME.head(500)])  # a file with 500 rows written twice
    parts = split(doubled, SplitConfig(strategy="random", test_fraction=0.5), seed=5)
    assert parts.train.height + parts.test.height == FRAME.height
    assert check_split(parts.train, parts.test, "random").passed


def test_repeat_pairs_are_counted_not_failed() -> None:
    train, test = _parts("random")
    again = test.head(2).with_columns(pl.col("timestamp") - 1)  # the same user and item, earlier
    check = check_split(pl.concat([train, again]), test, "random")
    assert check.passed and check.shared_pairs >= 2


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_the_pipeline_refuses_a_leaky_split_and_records_a_clean_one(
    small_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = load_entrypoint("flows/pipeline.py:pipeline")
    state = pipeline(small_settings.resolved(), return_state=True)
    assert state.is_completed(), state.message
    store = ArtifactStore(small_settings.storage.uri)
    manifest = find_run(store, "latest")
    check = manifest.split.leakage
    assert check is not None and check.passed
    assert (check.train, check.test) == (manifest.artifacts["train"].id, manifest.artifacts["test"].id)
    assert check.cutoff is not None  # the default protocol on timestamped data is temporal
    assert manifest.artifacts["leakage_check"].parents == ["train", "test"]
    graph, node = mermaid(manifest), manifest.artifacts["leakage_check"].id[:12]
    assert f'leakage_check["leakage_check<br/>{node}<br/>passed"]' in graph
    assert "train -->|split| leakage_check" in graph and "test -->|split| leakage_check" in graph
    shown = CliRunner().invoke(
        app, ["lineage", "latest", "--set", f"storage.uri={small_settings.storage.uri}", "--out", "/dev/null"]
    )
    assert shown.exit_code == 0, shown.output
    assert "leakage   passed: disjoint: 0 event(s) in both parts" in shown.output
    assert f"(train {check.train[:12]}, test {check.test[:12]})" in shown.output

    def leaky(frame: pl.DataFrame, cfg: SplitConfig, seed: int) -> Split:
        train, test = split(frame, cfg, seed)
        return Split(pl.concat([train, test.head(10)]), test)

    # The flow module's own name for the split function: what its split task calls.
    monkeypatch.setitem(pipeline.fn.__globals__, "split", leaky)
    settings = small_settings.model_copy(update={"seed": 7})  # not the cached split of the clean run
    failed = pipeline(settings.resolved(), return_state=True)
    assert failed.is_failed()
    with pytest.raises(LeakageFound, match="temporal split leaks: disjoint: 10 event"):
        failed.result()
    # The check that failed is kept for the post-mortem; the run is listed as failed, with the reason.
    documents = [json.loads(store.read_bytes(path)) for path in store.objects() if path.endswith(".json")]
    assert any(d.get("passed") is False and d.get("strategy") == "temporal" for d in documents)
    statuses = run_statuses(store)
    failed_runs = [s for run_id, s in statuses.items() if run_id != manifest.run_id]
    assert [(s["status"], s["step"]) for s in failed_runs] == [("failed", "before record")], statuses
    reason = failed_runs[0]["reason"]
    assert "LeakageFound" in reason and "10 event(s) in both parts" in reason
    assert [m.run_id for m in list_runs(store)] == [manifest.run_id]  # no manifest for the leaky run
