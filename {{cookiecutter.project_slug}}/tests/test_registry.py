"""The registry: versions, reuse of a version for the same model and data, transactional alias moves,
rollback, history, drift acknowledgements (SQLite), and parallel promotions, registrations, acknowledgements
and schema creation from several processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.artifacts.registry import (
    CHALLENGER,
    CHAMPION,
    NO_ALIAS,
    Registry,
    RegistryError,
    StaleAlias,
    VersionNotFound,
    registry_url,
)
from {{ cookiecutter.package_name }}.settings import RegistryConfig, StorageConfig


def manifest(run: str, model: str = "ease", ndcg: float = 0.3, content: str | None = None) -> dict[str, Any]:
    """The parts of a run manifest the registry reads; runs of the same `content` (default: the run's own)
    have the same model bytes and data."""
    content = content or run
    ref = {"uri": f"file:///store/objects/{content}", "kind": "x", "size": 1}
    return {
        "run_id": run,
        "model": model,
        "config_fingerprint": "f" * 64,
        "metrics": {"ndcg@10": ndcg},
        "artifacts": {
            name: {**ref, "id": f"{name}-{content}"}
            for name in ("model", "snapshot", "train", "test", "metrics_per_user")
        },
        "outputs": {"manifest_id": f"m-{run}", "manifest": f"file:///store/runs/{run}/manifest.json"},
    }


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(f"sqlite:///{tmp_path / 'registry.sqlite'}")


def test_register_makes_a_challenger_and_is_idempotent_per_run(registry: Registry) -> None:
    first = registry.register(manifest("run-a"), actor="run run-a")
    again = registry.register(manifest("run-a"), actor="run run-a")
    assert first.version == again.version == 1
    assert registry.get(CHALLENGER).version == 1 and registry.alias(CHAMPION) is None
    assert first.artifact("model")["id"] == "model-run-a" and first.metrics == {"ndcg@10": 0.3}
    assert [v.version for v in registry.versions()] == [1]
    with pytest.raises(VersionNotFound, match="champion"):
        registry.get(CHAMPION)


def test_the_same_model_on_the_same_data_reuses_its_version_and_the_history_says_who_asked(
    registry: Registry,
) -> None:
    first = registry.register(manifest("run-a"), actor="run run-a")
    registry.promote(first.version, actor="ci", reason="first")
    again = registry.register(manifest("run-b", content="run-a"), actor="run run-b")
    assert again.version == first.version == 1 and again.run_id == "run-a"  # another run's version: reused
    assert [v.version for v in registry.versions()] == [1]
    assert again.aliases == (CHAMPION,)  # a reuse moves no alias
    reuse = registry.history()[-1]
    assert (reuse.alias, reuse.action, reuse.from_version, reuse.to_version) == (NO_ALIAS, "reuse", None, 1)
    assert reuse.actor == "run run-b" and "run run-b: same model model-run-a" in reuse.reason
    assert [m.action for m in registry.history(CHALLENGER)] == ["register", "clear"]
    # The same model on other data, or another model on the same data: new versions.
    other_data = manifest("run-c", content="run-a")
    other_data["artifacts"]["snapshot"] = {**other_data["artifacts"]["snapshot"], "id": "snapshot-new"}
    assert registry.register(other_data, "run run-c").version == 2
    other_model = manifest("run-d", content="run-a")
    other_model["artifacts"]["model"] = {**other_model["artifacts"]["model"], "id": "model-new"}
    assert registry.register(other_model, "run run-d").version == 3


def test_drift_is_acknowledged_once_per_window_and_once_per_cooldown(registry: Registry) -> None:
    v1 = registry.register(manifest("a"), "run a").version
    v2 = registry.register(manifest("b"), "run b").version
    t0, hour = datetime(2026, 1, 1, 12, tzinfo=UTC), timedelta(hours=1)

    def ack(champion: int, snapshot: str, at: datetime, cooldown: timedelta = hour) -> bool:
        return registry.acknowledge_drift(champion, snapshot, ("rating",), "monitor", cooldown, at).emit

    assert ack(v1, "s1", t0)
    assert not ack(v1, "s1", t0 + 10 * hour)  # the same window, however late: reported already
    assert not ack(v1, "s2", t0 + hour / 2)  # a new snapshot within the cooldown
    assert ack(v1, "s2", t0 + 2 * hour)
    assert ack(v2, "s2", t0 + 2 * hour, cooldown=timedelta(0))  # a new champion re-arms it
    held = registry.acknowledge_drift(v2, "s2", (), "monitor", timedelta(0), t0 + 3 * hour)
    assert held.message == (
        "drift already reported at 2026-01-01 14:00:00 UTC for champion v2 on snapshot s2: no new event"
    )
    assert [(a.champion, a.snapshot_id) for a in registry.drift_acknowledgements()] == [
        (v1, "s1"),
        (v1, "s2"),
        (v2, "s2"),
    ]
    assert registry.drift_acknowledgements()[0].signals == ("rating",)


def test_promote_moves_the_champion_and_clears_the_challenger(registry: Registry) -> None:
    v1 = registry.register(manifest("a"), "run a").version
    move = registry.promote(v1, actor="ci", reason="first")
    assert (move.from_version, move.to_version) == (None, v1)
    assert registry.get(CHAMPION).aliases == (CHAMPION,)
    assert registry.alias(CHALLENGER) is None
    with pytest.raises(RegistryError, match="already the champion"):
        registry.promote(v1, actor="ci", reason="again")
    with pytest.raises(VersionNotFound):
        registry.promote(99, actor="ci", reason="no such version")


def test_compare_and_swap_refuses_a_stale_champion(registry: Registry) -> None:
    v1 = registry.register(manifest("a"), "run a").version
    v2 = registry.register(manifest("b"), "run b").version
    v3 = registry.register(manifest("c"), "run c").version
    registry.promote(v1, "ci", "first", expect=None)
    registry.promote(v2, "ci", "judged against v1", expect=v1)
    with pytest.raises(StaleAlias, match="now version 2"):
        registry.promote(v3, "ci", "judged against v1 too", expect=v1)
    assert registry.get(CHAMPION).version == v2


def test_rollback_walks_back_through_champions_and_history_lists_every_move(registry: Registry) -> None:
    versions = [registry.register(manifest(r), f"run {r}").version for r in ("a", "b", "c")]
    for v in versions:
        registry.promote(v, "ci", f"promote {v}")
    assert registry.rollback("alice", "v3 serves stale items").to_version == versions[1]
    assert registry.rollback("alice", "v2 too").to_version == versions[0]
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("alice", "nothing left")
    assert registry.get(CHAMPION).version == versions[0]
    champion_moves = [(m.action, m.from_version, m.to_version) for m in registry.history(CHAMPION)]
    assert champion_moves == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("promote", 2, 3),
        ("rollback", 3, 2),
        ("rollback", 2, 1),
    ]
    assert {m.actor for m in registry.history(CHAMPION)} == {"ci", "alice"}
    assert registry.history(CHAMPION)[-1].reason == "v2 too"
    # A promotion after a rollback continues from there: rolling back again returns to v1.
    registry.promote(versions[2], "ci", "fixed")
    assert registry.rollback("alice", "again").to_version == versions[0]


def test_default_url_is_a_sqlite_file_at_the_local_store_root(tmp_path: Path) -> None:
    url = registry_url(RegistryConfig(), StorageConfig(uri=str(tmp_path / "artifacts")))
    assert url == f"sqlite:///{tmp_path / 'artifacts' / 'registry.sqlite'}"
    given = RegistryConfig(url="postgresql+psycopg://reg@127.0.0.1:5432/registry", password="s3cret")
    assert registry_url(given, StorageConfig()) == "postgresql+psycopg://reg:s3cret@127.0.0.1:5432/registry"
    assert "s3cret" not in str(given.model_dump())


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new registry database several processes can share: a SQLite file, or a database on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.sqlite'}"
    return request.getfixturevalue("postgres_database")()


def _contender(url: str, worker: int, rounds: int, barrier: Any, results: Any) -> None:
    """One process of the parallel test: each round, register a model and promote it over what it read."""
    registry = Registry(url)
    for round_ in range(rounds):
        version = registry.register(manifest(f"w{worker}-r{round_}"), f"worker {worker}").version
        barrier.wait()  # both processes read the champion, then both try to replace it
        read = registry.alias(CHAMPION)
        barrier.wait()
        try:
            registry.promote(version, f"worker {worker}", "parallel", expect=read.version if read else None)
            results.put((round_, worker, "promoted"))
        except StaleAlias:
            results.put((round_, worker, "stale"))
        barrier.wait()


def _race(target: Any, url: str, rounds: int) -> list[Any]:
    """Two spawned processes running `target(url, worker, rounds, barrier, results)`; all they put."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=target, args=(url, w, rounds, barrier, results)) for w in (0, 1)]
    for p in workers:
        p.start()
    outcomes = [results.get(timeout=300) for _ in range(2 * rounds)]
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0
    return outcomes


def test_parallel_promotions_leave_one_champion_and_a_consistent_history(shared_url: str) -> None:
    """Two processes promote at the same moment, 20 rounds: exactly one wins each round, no lost update."""
    url, rounds = shared_url, 20
    Registry(url)  # the schema exists before the race starts (creating it concurrently is tested below)
    outcomes = _race(_contender, url, rounds)
    for round_ in range(rounds):
        states = sorted(state for r, _, state in outcomes if r == round_)
        assert states == ["promoted", "stale"], f"round {round_}: {states}"
    registry = Registry(url)
    moves = registry.history(CHAMPION)
    assert len(moves) == rounds
    # Every move starts from where the previous one left the champion: no promotion overwrote another unseen.
    assert all(b.from_version == a.to_version for a, b in zip(moves, moves[1:], strict=False))
    assert registry.get(CHAMPION).version == moves[-1].to_version
    assert len(registry.versions()) == 2 * rounds


def _twin(url: str, worker: int, rounds: int, barrier: Any, results: Any) -> None:
    """One process of the identical-runs test: each round, register the model the other process registers."""
    registry = Registry(url)
    for round_ in range(rounds):
        barrier.wait()
        twin = manifest(f"w{worker}-r{round_}", content=f"r{round_}")
        results.put((round_, registry.register(twin, f"worker {worker}").version))


def test_identical_runs_registering_at_once_end_with_one_version(shared_url: str) -> None:
    """Two processes register the same model on the same data at the same moment, 10 rounds: one version
    each round, and the history holds one registration and one reuse of it."""
    url, rounds = shared_url, 10
    Registry(url)
    outcomes = _race(_twin, url, rounds)
    for round_ in range(rounds):
        assert len({v for r, v in outcomes if r == round_}) == 1, f"round {round_}: {outcomes}"
    registry = Registry(url)
    assert len(registry.versions()) == rounds
    actions = [m.action for m in registry.history()]
    assert actions.count("register") == actions.count("reuse") == rounds


def _monitor(url: str, champion: int, barrier: Any, results: Any) -> None:
    registry = Registry(url)
    barrier.wait()
    results.put(registry.acknowledge_drift(champion, "snap", ("rating",), "monitor", timedelta(0)).emit)


def test_two_monitors_at_once_emit_one_drift_event(shared_url: str) -> None:
    url = shared_url
    champion = Registry(url).register(manifest("a"), "run a").version
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_monitor, args=(url, champion, barrier, results)) for _ in range(2)]
    for p in workers:
        p.start()
    assert sorted(results.get(timeout=120) for _ in workers) == [False, True]
    for p in workers:
        p.join(timeout=60)
    assert len(Registry(url).drift_acknowledgements()) == 1


def _open(url: str, results: Any) -> None:
    Registry(url)
    results.put("ok")


def test_opening_a_new_registry_from_several_processes_at_once(shared_url: str) -> None:
    url = shared_url
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_open, args=(url, results)) for _ in range(4)]
    for p in workers:
        p.start()
    assert [results.get(timeout=120) for _ in workers] == ["ok"] * 4
    for p in workers:
        p.join(timeout=60)
    assert Registry(url).versions() == []
