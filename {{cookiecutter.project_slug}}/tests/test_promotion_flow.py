"""Registration and promotion inside the pipeline, serving from the registry, and manual approval, against a
real (temporary) Prefect server."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx
import polars as pl
import pytest

from {{ cookiecutter.package_name }} import evaluation
from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, open_store
from {{ cookiecutter.package_name }}.artifacts.manifest import PipelineResult
from {{ cookiecutter.package_name }}.artifacts.registry import CHALLENGER, CHAMPION, open_registry
from {{ cookiecutter.package_name }}.cli import load_entrypoint
from {{ cookiecutter.package_name }}.models import build_model
from {{ cookiecutter.package_name }}.promotion import decide
from {{ cookiecutter.package_name }}.serving import load_model
from {{ cookiecutter.package_name }}.settings import ModelConfig, Settings

# The flows as a worker loads them: by file path, from the project root.
pipeline = load_entrypoint("flows/pipeline.py:pipeline")
batch_recommend = load_entrypoint("flows/recommend.py:batch_recommend")

pytestmark = pytest.mark.usefixtures("prefect_server")
_EVALUATE = evaluation.evaluate


def _run(settings: Settings, **model: Any) -> dict[str, Any]:
    resolved = settings.resolved()
    resolved["model"] = {**resolved["model"], **model}
    state = pipeline(resolved, return_state=True)
    assert state.is_completed(), state.message
    return state.result()


def test_promotion_rollback_and_serving_through_the_pipeline(small_settings: Settings) -> None:
    first = _run(small_settings, name="popularity")["promotion"]
    assert first["promoted"] and first["version"] == 1
    assert "first champion" in first["decision"]["reason"]

    better = _run(small_settings, name="ease")["promotion"]
    assert better["promoted"] and better["version"] == 2
    assert better["decision"]["reference"] == "champion v1" and better["decision"]["comparison"]["passed"]

    # A heavily over-regularised EASE ranks worse than the champion: registered, judged, kept out.
    worse = _run(small_settings, name="ease", ease={"l2": 100_000.0})["promotion"]
    assert not worse["promoted"] and worse["version"] == 3
    assert "gain over the champion v2 is -" in worse["decision"]["reason"]

    registry, store = (
        open_registry(small_settings.registry, small_settings.storage),
        open_store(small_settings.storage),
    )
    assert registry.get(CHAMPION).version == 2 and registry.get(CHALLENGER).version == 3
    # The stored decision is the one the flow returned, and the registry keeps a record of each.
    stored = store.get_json(ArtifactRef(**worse["decision_ref"]))
    assert stored["reason"] == worse["decision"]["reason"]
    assert [d.promoted for d in registry.decisions()] == [1, 1, 0]

    _, champion_model = load_model(registry, store)
    users = champion_model.vocabulary.users[:5].tolist()
    before = champion_model.recommend(users, 10)
    registry.rollback(actor="on-call", reason="v2 recommends stale items")
    held, restored = load_model(registry, store)
    assert held.version == 1 and held.model_name == "popularity"
    _, v1 = load_model(registry, store, 1)
    assert restored.recommend(users, 10).equals(v1.recommend(users, 10))
    assert not restored.recommend(users, 10).equals(before)

    history = [(m.alias, m.action, m.from_version, m.to_version) for m in registry.history()]
    assert history == [
        (CHALLENGER, "register", None, 1),
        (CHAMPION, "promote", None, 1),
        (CHALLENGER, "clear", 1, None),
        (CHALLENGER, "register", None, 2),
        (CHAMPION, "promote", 1, 2),
        (CHALLENGER, "clear", 2, None),
        (CHALLENGER, "register", None, 3),
        (CHAMPION, "rollback", 2, 1),
    ]

    batch = batch_recommend(small_settings.resolved(), k=5)
    frame = store.get_frame(ArtifactRef(**batch["ref"]))
    assert batch["version"] == 1 and frame.columns == ["user_id", "item_id", "score", "rank"]
    assert frame.get_column("user_id").n_unique() == restored.n_users == batch["users"]
    assert frame.group_by("user_id").len().get_column("len").max() == 5
    # The batch output matches serving one user at a time.
    one = frame.filter(pl.col("user_id") == users[0]).drop("score")
    assert one.equals(restored.recommend(users[:1], 5).drop("score"))


def test_the_judge_reads_stored_metrics_and_decides_as_when_it_ranked_everything(
    small_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each decision equals the one made by ranking the challenger, the baseline and the champion again (the
    judge's former way), number for number; it ranks only a champion evaluated on another split."""
    ranked: list[tuple[str, bool]] = []

    def counted(model: Any, *args: Any, **kwargs: Any) -> Any:
        ranked.append((model.name, kwargs.get("as_served", False)))
        return _EVALUATE(model, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", counted)
    # A guard on a per-user metric as well as on coverage: both summaries are compared.
    settings = small_settings.updated({"promotion": {"guards": {"coverage@10": 0.05, "recall@10": 0.5}}})

    def judged(**model: Any) -> dict[str, Any]:
        ranked.clear()
        promotion = _run(settings, **model)["promotion"]
        decision = promotion["decision"]
        # Compared as JSON: the flow's result is (intervals are lists there, tuples in a fresh decision).
        expected = json.loads(json.dumps(_judged_by_ranking(settings, promotion["version"], decision)))
        assert decision == expected, model
        return promotion

    first = judged(name="ease")  # no champion: against the baseline the evaluate task stored
    assert first["promoted"] and first["decision"]["reference"] == "popularity baseline"
    assert ranked == [("ease", False), ("popularity", False)]  # the evaluate task's, none by the judge
    worse = judged(name="ease", ease={"l2": 100_000.0})  # the champion on the same split: its stored metrics
    assert worse["decision"]["reference"] == "champion v1" and not worse["promoted"]
    assert ranked == [("ease", False), ("popularity", False)]
    # Other data (another seed), so another split: the champion is ranked as served on the challenger's.
    settings = settings.updated({"seed": 7})
    other = judged(name="ease")
    assert other["decision"]["reference"] == "champion v1"
    assert ranked == [("ease", False), ("popularity", False), ("ease", True)]


def _judged_by_ranking(settings: Settings, version: int, made: dict[str, Any]) -> dict[str, Any]:
    """The decision on `version` as the judge made it before it read stored metrics: the challenger ranked on
    its split, then the champion as served on it or, with none, popularity fitted on its train split. Its
    latency is the one the judge measured in `made` (a timing, not a ranking)."""
    registry, store = (
        open_registry(settings.registry, settings.storage),
        open_store(settings.storage),
    )
    cfg, seed = settings.evaluation, settings.seed
    champion = made["champion"]
    candidate, model = load_model(registry, store, version, served=False)
    train, test = (store.get_frame(ArtifactRef(**candidate.artifact(n))) for n in ("train", "test"))
    evaluate = _EVALUATE  # not the counting one the test installs
    challenger = evaluate(model, train, test, cfg.k, cfg.batch_size)
    if champion is not None:
        _, held = load_model(registry, store, champion, served=False)
        reference = evaluate(held, train, test, cfg.k, cfg.batch_size, as_served=True)
        label = f"champion v{champion}"
    elif model.name == "popularity":
        reference, label = None, "popularity baseline"
    else:
        baseline = build_model(ModelConfig(name="popularity")).fit(train, seed)
        reference = evaluate(baseline, train, test, cfg.k, cfg.batch_size)
        label = "popularity baseline"
    latency = {k: v for k, v in made["latency"].items() if k not in ("budget_ms", "passed")}
    policy, metric = settings.promotion, cfg.primary_metric
    return decide(
        policy,
        metric=metric,
        version=version,
        challenger=challenger,
        reference=reference,
        reference_label=label,
        champion=champion,
        latency=latency,
        seed=seed,
    ).to_dict()


def test_a_cached_rerun_reuses_the_version_and_keeps_its_decision(small_settings: Settings) -> None:
    first = _run(small_settings, name="ease")
    assert first["promotion"]["promoted"] and first["promotion"]["version"] == 1  # beats popularity
    rerun = _run(small_settings, name="ease")
    assert {t["state"] for name, t in rerun["tasks"].items() if name != "inspect-inputs"} == {"Cached"}
    again = rerun["promotion"]
    assert again["version"] == 1 and again["reused"] and again["decided_before"] and not again["promoted"]
    assert again["summary"].startswith(
        "version 1 reused (same model and data), decision: promoted against the popularity baseline at "
    )
    registry = open_registry(small_settings.registry, small_settings.storage)
    assert [v.version for v in registry.versions()] == [1]
    assert len(registry.decisions(1)) == 1  # not judged again
    reuse = registry.history()[-1]
    assert (reuse.action, reuse.to_version, reuse.actor) == ("reuse", 1, f"run {rerun['run_id']}")


def test_a_reused_version_never_judged_is_judged_now(small_settings: Settings) -> None:
    """A run registered its model, then stopped before the judgement: the next identical run judges it."""
    unjudged = _run(small_settings.updated({"promotion": {"enabled": False}}), name="ease")
    registry = open_registry(small_settings.registry, small_settings.storage)
    assert registry.register(PipelineResult.model_validate(unjudged), actor="a run that stopped").version == 1
    again = _run(small_settings, name="ease")["promotion"]
    assert again["version"] == 1 and again["reused"] and not again["decided_before"]
    assert again["promoted"] and again["decision"]["reference"] == "popularity baseline"
    assert [v.version for v in registry.versions()] == [1] and len(registry.decisions(1)) == 1


def test_manual_approval_pauses_until_a_person_answers(small_settings: Settings) -> None:
    from prefect.flow_runs import resume_flow_run

    resolved = small_settings.resolved()
    # A short timeout: should the answer never arrive, the paused flow ends instead of outliving the test.
    resolved["promotion"] = {
        **resolved["promotion"],
        "manual_approval": True,
        "approval_timeout_seconds": 120,
    }
    # Found by its tag: the flow renames its run after what it trains.
    name = f"approval-{uuid.uuid4().hex[:8]}"
    resolved["tags"] = {"test": name}
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["state"] = pipeline(resolved, return_state=True)

    worker = threading.Thread(target=run)
    worker.start()
    flow_run_id = _wait_for_paused(name, timeout=180)
    registry = open_registry(small_settings.registry, small_settings.storage)
    assert registry.alias(CHAMPION) is None  # judged as promotable, but nothing moves before the answer
    resume_flow_run(flow_run_id, run_input={"approve": True, "reason": "checked the report"})
    worker.join(timeout=180)
    assert not worker.is_alive(), "the flow did not resume after the answer"
    state = outcome["state"]
    assert state.is_completed(), state.message
    assert state.result()["promotion"]["promoted"]
    (move,) = registry.history(CHAMPION)
    assert "approved in the Prefect UI" in move.actor and "checked the report" in move.reason


def _wait_for_paused(name: str, timeout: float) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags, TaskRunFilter
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.input.run_input import keyset_from_paused_state

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"test={name}"])),
                task_run_filter=TaskRunFilter(),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
                offset=0,
            )
            if runs and runs[0].state is not None and runs[0].state.is_paused():
                # The flow saves its input form just after it pauses; an answer sent before that is dropped
                # by the server (no schema to check it against), so wait for the form too.
                keyset = keyset_from_paused_state(runs[0].state)
                try:
                    client.read_flow_run_input(runs[0].id, keyset["schema"])
                    return runs[0].id
                except httpx.HTTPStatusError as exc:  # 404 until the form is saved
                    if exc.response.status_code != 404:
                        raise
            time.sleep(0.5)
    raise AssertionError(f"flow run {name} did not pause within {timeout}s")
