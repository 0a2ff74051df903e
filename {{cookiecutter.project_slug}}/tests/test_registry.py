"""The registry: versions, transactional alias moves, rollback, history (SQLite), and parallel promotions and
schema creation from several processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.artifacts.registry import (
    CHALLENGER,
    CHAMPION,
    Registry,
    RegistryError,
    StaleAlias,
    VersionNotFound,
    registry_url,
)
from {{ cookiecutter.package_name }}.settings import RegistryConfig, StorageConfig


def manifest(run: str, model: str = "ease", ndcg: float = 0.3) -> dict[str, Any]:
    """The parts of a run manifest the registry reads."""
    ref = {"uri": f"file:///store/objects/{run}", "kind": "x", "size": 1}
    return {
        "run_id": run,
        "model": model,
        "config_fingerprint": "f" * 64,
        "metrics": {"ndcg@10": ndcg},
        "artifacts": {
            name: {**ref, "id": f"{name}-{run}"}
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


def test_parallel_promotions_leave_one_champion_and_a_consistent_history(shared_url: str) -> None:
    """Two processes promote at the same moment, 20 rounds: exactly one wins each round, no lost update."""
    url, rounds = shared_url, 20
    Registry(url)  # the schema exists before the race starts (creating it concurrently is tested below)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_contender, args=(url, w, rounds, barrier, results)) for w in (0, 1)]
    for p in workers:
        p.start()
    outcomes = [results.get(timeout=300) for _ in range(2 * rounds)]
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0
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
