"""The registry: versions, reuse of a version for the same model and data, transactional alias moves,
rollback, history, drift acknowledgements, champions per dataset (SQLite), and parallel promotions,
registrations, acknowledgements, schema creation and the upgrade of a registry made before datasets had
champions of their own, from several processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from factories import pipeline_result
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    insert,
    text,
)

from {{ cookiecutter.package_name }}.artifacts import ArtifactStore, open_store
from {{ cookiecutter.package_name }}.artifacts.manifest import PipelineResult
from {{ cookiecutter.package_name }}.artifacts.registry import (
    CHALLENGER,
    CHAMPION,
    NO_ALIAS,
    UNKNOWN_DATASET,
    UPGRADED,
    Registry,
    RegistryError,
    StaleAlias,
    VersionNotFound,
    registry_url,
)
from {{ cookiecutter.package_name }}.artifacts.registry.schema import HEAD
from {{ cookiecutter.package_name }}.artifacts.registry.tables import VERSION_TABLE
from {{ cookiecutter.package_name }}.settings import RegistryConfig, StorageConfig

pytestmark = pytest.mark.unit


def manifest(
    run: str, model: str = "ease", ndcg: float = 0.3, content: str | None = None, dataset: str = "ds"
) -> PipelineResult:
    """A run's result as the registry takes it; runs of the same `content` (default: the run's own) have the
    same model bytes and data."""
    return pipeline_result(run, model, ndcg, content, dataset)


def _with_id(result: PipelineResult, name: str, artifact_id: str) -> PipelineResult:
    """`result` with its artifact `name` replaced by another of id `artifact_id`."""
    entry = result.artifacts[name].model_copy(update={"id": artifact_id})
    return result.model_copy(update={"artifacts": {**result.artifacts, name: entry}})


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
    assert (
        registry.register(
            _with_id(manifest("run-c", content="run-a"), "snapshot", "new"), "run run-c"
        ).version
        == 2
    )
    assert (
        registry.register(_with_id(manifest("run-d", content="run-a"), "model", "new"), "run run-d").version
        == 3
    )


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


def test_each_dataset_has_its_own_champion_challenger_history_and_decisions(registry: Registry) -> None:
    a1 = registry.register(manifest("a1", dataset="ml-100k"), "run a1").version
    s1 = registry.register(manifest("s1", dataset="synthetic"), "run s1").version
    # The same model bytes and snapshot under another dataset name: another version, not a reuse.
    twin = registry.register(manifest("s2", content="a1", dataset="synthetic"), "run s2").version
    assert (a1, s1, twin) == (1, 2, 3) and registry.datasets() == ["ml-100k", "synthetic"]
    assert registry.get(CHALLENGER, "ml-100k").version == a1
    assert registry.get(CHALLENGER, "synthetic").version == twin

    registry.promote(a1, "ci", "first of ml-100k", expect=None)
    # The first champion of synthetic: nothing of ml-100k stands in its way (its champion is None).
    registry.promote(s1, "ci", "first of synthetic", expect=None)
    assert (
        registry.get(CHAMPION, "ml-100k").version == a1 and registry.get(CHAMPION, "synthetic").version == s1
    )
    with pytest.raises(StaleAlias, match="champion of synthetic is now version 2"):
        registry.promote(twin, "ci", "judged against none", expect=None)
    registry.promote(twin, "ci", "beats v2", expect=s1)
    assert registry.get(CHAMPION, "ml-100k").version == a1  # untouched by synthetic's promotions
    assert [v.version for v in registry.versions("synthetic")] == [s1, twin]
    assert {v.version: v.dataset for v in registry.versions()} == {
        1: "ml-100k",
        2: "synthetic",
        3: "synthetic",
    }

    # Asking for an alias without a dataset is refused once there are two: it cannot be guessed.
    with pytest.raises(RegistryError, match=r"2 datasets \(ml-100k, synthetic\)"):
        registry.get(CHAMPION)
    assert registry.rollback("alice", "back", dataset="synthetic").to_version == s1
    with pytest.raises(RegistryError, match="no previous champion of dataset ml-100k"):
        registry.rollback("alice", "nothing before", dataset="ml-100k")
    moves = [(m.dataset, m.action, m.to_version) for m in registry.history(CHAMPION, dataset="synthetic")]
    assert moves == [
        ("synthetic", "promote", s1),
        ("synthetic", "promote", twin),
        ("synthetic", "rollback", s1),
    ]
    assert {m.dataset for m in registry.history(dataset="ml-100k")} == {"ml-100k"}

    registry.record_decision(a1, True, "popularity baseline", "first", "d1")
    registry.record_decision(twin, False, "champion v2", "kept out", "d2")
    assert [d.decision_id for d in registry.decisions(dataset="ml-100k")] == ["d1"]
    assert [d.decision_id for d in registry.decisions(dataset="synthetic")] == ["d2"]

    # Drift on one dataset does not hold back the other's event (the cooldown is per dataset).
    t0, day = datetime(2026, 1, 1, tzinfo=UTC), timedelta(days=1)
    assert registry.acknowledge_drift(a1, "snap-a", ("rating",), "monitor", day, t0).emit
    assert registry.acknowledge_drift(s1, "snap-s", ("rating",), "monitor", day, t0).emit
    assert not registry.acknowledge_drift(a1, "snap-a2", ("rating",), "monitor", day, t0 + day / 2).emit


def test_a_serving_model_is_recorded_for_its_version(registry: Registry) -> None:
    v1 = registry.register(manifest("a"), "run a").version
    assert registry.get(v1).serving is None
    entry = {"model": {"id": "refit", "uri": "objects/re/refit.safetensors", "kind": "x", "size": 1}}
    assert registry.set_serving(v1, {**entry, "evaluated_model": "model-a"}).serving == {
        **entry,
        "evaluated_model": "model-a",
    }
    with pytest.raises(VersionNotFound):
        registry.set_serving(99, entry)


def test_default_url_is_a_sqlite_file_at_the_local_store_root(tmp_path: Path) -> None:
    url = registry_url(RegistryConfig(), StorageConfig(uri=str(tmp_path / "artifacts")))
    assert url == f"sqlite:///{tmp_path / 'artifacts' / 'registry.sqlite'}"
    given = RegistryConfig(url="postgresql+psycopg://reg@127.0.0.1:5432/registry", password="s3cret")
    assert registry_url(given, StorageConfig()) == "postgresql+psycopg://reg:s3cret@127.0.0.1:5432/registry"
    assert "s3cret" not in str(given.model_dump())


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.e2e),  # processes that race
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
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


# The schema as it was before datasets had champions of their own (what the registry created until then).
_old = MetaData()
Table("registry_lock", _old, Column("id", Integer, primary_key=True), Column("moves", Integer))
Table(
    "model_versions",
    _old,
    Column("version", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, unique=True),
    *(Column(name, String(200), nullable=False) for name in ("created_at", "created_by", "model_name")),
    Column("model_id", String(64), nullable=False),
    Column("model_uri", Text, nullable=False),
    Column("snapshot_id", String(64), nullable=False),
    Column("manifest_id", String(64), nullable=False),
    Column("manifest_uri", Text, nullable=False),
    Column("config_fingerprint", String(64), nullable=False),
    Column("metrics", Text, nullable=False),
    Column("artifacts", Text, nullable=False),
)
Table(
    "aliases",
    _old,
    Column("alias", String(32), primary_key=True),
    Column("version", Integer, ForeignKey("model_versions.version"), nullable=False),
    Column("moved_at", String(32), nullable=False),
)
Table(
    "alias_moves",
    _old,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("alias", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decision_id", String(64), nullable=True),
)
Table(
    "decisions",
    _old,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("version", Integer, ForeignKey("model_versions.version"), nullable=False),
    Column("promoted", Integer, nullable=False),
    Column("reference", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decision_id", String(64), nullable=False),
)
Table(
    "drift_events",
    _old,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("champion", Integer, ForeignKey("model_versions.version"), nullable=False),
    Column("snapshot_id", String(64), nullable=False),
    Column("signals", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    UniqueConstraint("champion", "snapshot_id"),
)
# Old manifests named no dataset; their data settings do. Run r-gone's manifest is no longer in the store.
_OLD_RUNS = {
    "r-ml": {"source": "movielens", "path": "/data/ml-100k"},
    "r-syn": {"source": "synthetic"},
    "r-syn2": {"source": "synthetic"},
    "r-gone": None,
}


def _old_registry(url: str, store: ArtifactStore) -> None:
    """A registry written by the code before per-dataset champions: four versions, v1 (ml-100k) the champion,
    v3 (synthetic) the challenger after v2 was kept out; manifests in `store`."""
    engine = create_engine(url)
    _old.create_all(engine)
    now = "2026-01-01T00:00:00.000+00:00"
    with engine.begin() as conn:
        conn.execute(insert(_old.tables["registry_lock"]).values(id=1, moves=7))
        for number, (run, data) in enumerate(_OLD_RUNS.items(), start=1):
            row = manifest(run).document() | {"format": 1}  # as that code wrote them
            row.pop("dataset")
            versions = _old.tables["model_versions"]
            conn.execute(
                insert(versions).values(
                    version=number, created_at=now, created_by="ci", **_old_version_columns(row)
                )
            )
            if data is not None:
                store.write_text(f"runs/{run}/manifest.json", json.dumps({**row, "config": {"data": data}}))
        moves = [("challenger", "register", None, 1), ("champion", "promote", None, 1)]
        moves += [("challenger", "clear", 1, None), ("challenger", "register", None, 2)]
        moves += [("challenger", "register", 2, 3), ("", "reuse", None, 3), ("challenger", "register", 3, 4)]
        for alias, action, before, after in moves:
            conn.execute(
                insert(_old.tables["alias_moves"]).values(
                    at=now,
                    alias=alias,
                    action=action,
                    from_version=before,
                    to_version=after,
                    actor="ci",
                    reason="old",
                )
            )
        conn.execute(insert(_old.tables["aliases"]).values(alias="champion", version=1, moved_at=now))
        conn.execute(insert(_old.tables["aliases"]).values(alias="challenger", version=4, moved_at=now))
        conn.execute(
            insert(_old.tables["decisions"]).values(
                at=now,
                version=1,
                promoted=1,
                reference="popularity baseline",
                reason="first",
                decision_id="d1",
            )
        )
    if url.startswith("postgresql"):  # explicit numbers leave the serial behind
        with engine.begin() as conn:
            conn.execute(text("SELECT setval('model_versions_version_seq', 4)"))
    engine.dispose()


def _old_version_columns(row: dict[str, Any]) -> dict[str, Any]:
    artifacts = row["artifacts"]
    return {
        "run_id": row["run_id"],
        "model_name": row["model"],
        "model_id": artifacts["model"]["id"],
        "model_uri": artifacts["model"]["uri"],
        "snapshot_id": artifacts["snapshot"]["id"],
        "manifest_id": row["outputs"]["manifest_id"],
        "manifest_uri": row["outputs"]["manifest"],
        "config_fingerprint": row["config_fingerprint"],
        "metrics": json.dumps(row["metrics"]),
        "artifacts": json.dumps(artifacts),
    }


def _open_old(url: str, store_uri: str, results: Any) -> None:
    Registry(url, open_store(StorageConfig(uri=store_uri)))
    results.put("ok")


def test_a_registry_from_before_per_dataset_champions_is_upgraded_once_and_keeps_its_champion(
    shared_url: str, tmp_path: Path
) -> None:
    """Opened by four processes at once: one upgrades it under the lock, the others find it done."""
    store_uri = str(tmp_path / "store")
    store = open_store(StorageConfig(uri=store_uri))
    _old_registry(shared_url, store)
    with pytest.raises(RegistryError, match="predates per-dataset champions"):
        Registry(shared_url)  # without the store its versions' datasets cannot be found
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_open_old, args=(shared_url, store_uri, results)) for _ in range(4)]
    for p in workers:
        p.start()
    assert [results.get(timeout=120) for _ in workers] == ["ok"] * 4
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0

    registry = Registry(shared_url, store)
    engine = create_engine(shared_url)
    with engine.connect() as conn:  # stamped 0001 by its tables, then upgraded by revision 0002
        assert conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == HEAD
    engine.dispose()
    assert {v.version: v.dataset for v in registry.versions()} == {
        1: "ml-100k",
        2: "synthetic",
        3: "synthetic",
        4: UNKNOWN_DATASET,  # its manifest is gone: kept apart, never anyone's champion by mistake
    }
    assert registry.get(CHAMPION, "ml-100k").version == 1
    assert registry.alias(CHAMPION, "synthetic") is None and registry.alias(CHALLENGER, "synthetic") is None
    assert registry.get(CHALLENGER, UNKNOWN_DATASET).version == 4
    assert [d.decision_id for d in registry.decisions(dataset="ml-100k")] == ["d1"]
    history = registry.history()
    upgrades = [m for m in history if m.action == UPGRADED]
    assert len(upgrades) == 1 and "ml-100k: 1 versions, synthetic: 2 versions" in upgrades[0].reason
    assert [(m.dataset, m.action) for m in history[:3]] == [
        ("ml-100k", "register"),
        ("ml-100k", "promote"),
        ("ml-100k", "clear"),
    ]
    assert [m.dataset for m in history if m.action == "reuse"] == ["synthetic"]
    # It works on as any registry: numbering goes on, each dataset's champion moves on its own.
    v5 = registry.register(manifest("r-new", dataset="synthetic"), "run r-new").version
    registry.promote(v5, "ci", "first of synthetic", expect=None)
    assert v5 == 5 and registry.get(CHAMPION, "ml-100k").version == 1
