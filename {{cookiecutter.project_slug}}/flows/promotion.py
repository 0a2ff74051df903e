"""Registration and promotion after a pipeline run.

`promote_model` runs inside the pipeline flow: register the run's model (it becomes the challenger of its
dataset), judge it against the champion of the same dataset (or, with none, popularity), optionally wait for
a person's approval in the Prefect UI, refit it on the whole snapshot for serving, then move the champion
alias with a compare-and-swap. If another run moved the champion in between, the challenger is judged again
against the new champion, so a model never replaces one it was not compared with, nor another dataset's.

Judging compares evaluated models (each trained on its run's train split); the refit is what `recommend`
serves, so a user's held-out events count as seen. It is made before the alias moves, so a champion is never
served by a model that has not seen its whole snapshot; a swap that turns out stale keeps the refit for when
the version is promoted.

The judge ranks only what it cannot read back. The challenger's per-user metrics, and the popularity
baseline's on the same split, are what the run's evaluate task stored. A champion evaluated on the very same
split (same train and test objects) brings its own stored metrics: ranking it as served on that split would
give the same numbers, its seen items being that train split. A champion of another split is ranked as served
on the challenger's. Stored metrics are used only when computed as the judge would compute them now (same K
and batch size); otherwise (a version from before they were stored, a changed evaluation config) it ranks.

A run whose model bytes and snapshot equal an existing version's gets that version back from the registry (a
fully cached rerun, a retrain on drift that changed nothing). A version judged before keeps its decision and
is not judged again: the same model on the same data would meet the same policy, and judging it anew would
only add a second, contradicting record should the champion have changed meanwhile. A version registered
but never judged (its run stopped in between) is judged now.

A judgement that fails (an error in the policy, the registry gone, a timed-out approval) retires the version
it was judging: it stops being the challenger and the registry's history says why (`undecided`); the run is
then marked failed by the pipeline. Each step notes what it did to the registry in the run's status record
(runs.py), from which `models rebuild` restores a lost registry.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import TYPE_CHECKING, Any

import polars as pl
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from flows.ui import ARTIFACT_PREFIX
from {{ cookiecutter.package_name }} import model_card
from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, ArtifactStore, open_store, runs
from {{ cookiecutter.package_name }}.artifacts.manifest import PipelineResult, read_manifest
from {{ cookiecutter.package_name }}.artifacts.registry import (
    CHAMPION,
    DecisionRecord,
    ModelVersion,
    RegistryError,
    StaleAlias,
    open_registry,
)
from {{ cookiecutter.package_name }}.promotion import Decision, decide
from {{ cookiecutter.package_name }}.settings import (
    EvaluationConfig,
    PromotionConfig,
    RegistryConfig,
    Settings,
    StorageConfig,
)

if TYPE_CHECKING:  # torch: imported by the judge when it loads a model, not when the flows are loaded
    from {{ cookiecutter.package_name }}.evaluation import Scores

_ATTEMPTS = 5  # judge-and-swap rounds before giving up when other runs keep moving the champion


class Approval(RunInput):
    """What a person answers in the Prefect UI when `promotion.manual_approval` is on."""

    approve: bool
    reason: str = ""


@task(name="register")
def register_task(
    result: PipelineResult, registry_cfg: RegistryConfig, storage: StorageConfig
) -> dict[str, Any]:
    """Register the run's model, or reuse the version that holds the same model on the same snapshot."""
    registry = open_registry(registry_cfg, storage)
    version = registry.register(result, actor=f"run {result.run_id}")
    judged = registry.decisions(version.version)
    outcome = _registration(version, version.run_id != result.run_id, judged[-1] if judged else None)
    noted = {
        "version": version.version,
        "reused": outcome["reused"],
        "model_id": version.model_id,
        "dataset": version.dataset,
    }
    runs.update_status(open_store(storage), result.run_id, registry=noted)
    get_run_logger().info(outcome["summary"])
    return outcome


@task(name="judge")
def judge_task(
    run_id: str,
    version: int,
    policy: PromotionConfig,
    evaluation: EvaluationConfig,
    seed: int,
    registry_cfg: RegistryConfig,
    storage: StorageConfig,
) -> dict[str, Any]:
    """The promotion decision for `version`: the paired test against the champion (or popularity), guards
    and latency, from the metrics evaluation stored where it can."""
    from {{ cookiecutter.package_name }} import serving
    from {{ cookiecutter.package_name }}.evaluation import evaluate, popularity_baseline

    registry, store = open_registry(registry_cfg, storage), open_store(storage)
    # Evaluated models on both sides: a refit for serving has seen the test events.
    candidate, model = serving.load_model(registry, store, version, served=False)
    ks, metric, batch = evaluation.k, evaluation.primary_metric, evaluation.batch_size

    @cache
    def split() -> tuple[pl.DataFrame, pl.DataFrame]:  # read only if something is ranked on it
        train, test = (store.get_frame(ArtifactRef(**candidate.artifact(n))) for n in ("train", "test"))
        return train, test

    challenger = _stored(store, candidate, evaluation) or evaluate(model, *split(), ks, batch)
    champion = registry.alias(CHAMPION, candidate.dataset)  # of the same dataset: ids mean the same things
    if champion is not None:
        label = f"champion v{champion.version}"
        reference = _stored(store, champion, evaluation) if _same_split(champion, candidate) else None
        if reference is None:  # evaluated on another split (or not stored): ranked as served on this one
            _, held = serving.load_model(registry, store, champion.version, served=False)
            reference = evaluate(held, *split(), ks, batch, as_served=True)
    elif model.name == "popularity":
        reference, label = None, "popularity baseline"
    else:
        label = "popularity baseline"
        reference = _stored(store, candidate, evaluation, baseline=True)
        reference = reference or popularity_baseline(*split(), ks, batch, seed)
    decision = decide(
        policy,
        metric=metric,
        version=version,
        challenger=challenger,
        reference=reference,
        reference_label=label,
        champion=champion.version if champion else None,
        latency=serving.latency_per_1k(model, max(ks)),
        seed=seed,
    )
    ref = store.put_json(decision.to_dict(), kind="promotion-decision")
    registry.record_decision(version, decision.promote, label, decision.reason, ref.id)
    card = model_card.build(registry, store, candidate)
    card_ref = model_card.save(store, candidate, card)
    runs.update_status(store, run_id, registry={"decision": ref.model_dump(), "card": card_ref.model_dump()})
    get_run_logger().info("dataset %s, version %d: %s", candidate.dataset, version, decision.reason)
    create_markdown_artifact(
        key=f"{ARTIFACT_PREFIX}-promotion", markdown=decision.markdown(), description="Promotion decision"
    )
    create_markdown_artifact(
        key=f"{ARTIFACT_PREFIX}-model-card", markdown=card, description=f"Model card, version {version}"
    )
    return {"decision": decision.to_dict(), "decision_ref": ref.model_dump()}


def _same_split(a: ModelVersion, b: ModelVersion) -> bool:
    """Whether two versions were evaluated on the same train and test objects (by content id)."""
    return all(a.artifact(name)["id"] == b.artifact(name)["id"] for name in ("train", "test"))


def _stored(
    store: ArtifactStore, version: ModelVersion, evaluation: EvaluationConfig, baseline: bool = False
) -> Scores | None:
    """The scores the version's run stored on its split (its model's, or with `baseline` popularity's), read
    back as the judge would compute them; None where they are not stored or were computed with other K or
    batch size (a batch of another size may round scores differently), so the judge ranks instead."""
    from {{ cookiecutter.package_name }}.evaluation import Scores

    try:
        text = store.read_text(f"runs/{version.run_id}/{runs.MANIFEST_NAME}")
    except FileNotFoundError:  # a damaged store (`verify` reports it): rank instead
        return None
    if hashlib.sha256(text.encode()).hexdigest() != version.manifest_id:
        return None  # not the manifest the version was registered from
    manifest = read_manifest(json.loads(text))
    names = ("baseline_metrics", "baseline_metrics_per_user") if baseline else ("metrics", "metrics_per_user")
    stored, artifacts = manifest.config["evaluation"], manifest.artifacts
    same = (
        sorted(set(stored["k"])) == sorted(set(evaluation.k))
        and stored["batch_size"] == evaluation.batch_size
    )
    if not same or not all(name in artifacts for name in names):
        return None
    summary, per_user = (artifacts[n].ref() for n in names)
    return Scores(per_user=store.get_frame(per_user), summary=store.get_json(summary))


@task(name="promote")
def promote_task(
    run_id: str,
    version: int,
    expect: int | None,
    actor: str,
    reason: str,
    decision_id: str,
    registry_cfg: RegistryConfig,
    storage: StorageConfig,
) -> dict[str, Any]:
    """Move the champion alias to `version` if the champion is still `expect`; report a stale read."""
    try:
        move = open_registry(registry_cfg, storage).promote(version, actor, reason, expect, decision_id)
    except StaleAlias as exc:
        get_run_logger().info("champion moved meanwhile (%s); judging again", exc)
        return {"stale": True}
    runs.update_status(open_store(storage), run_id, registry={"promoted": True})
    get_run_logger().info(
        "dataset %s: version %d is the champion (was %s)", move.dataset, version, move.from_version
    )
    return {"stale": False, "from_version": move.from_version, "move_id": move.id}


@task(name="refit-for-serving")
def refit_task(
    run_id: str, version: int, actor: str, registry_cfg: RegistryConfig, storage: StorageConfig
) -> dict[str, Any]:
    """Refit the version on its whole snapshot to serve it (once per version); the run's status links the
    served model to the evaluated one."""
    from {{ cookiecutter.package_name }} import serving

    registry, store = open_registry(registry_cfg, storage), open_store(storage)
    entry, fresh = serving.refit_for_serving(registry, store, version, actor)
    runs.update_status(store, run_id, registry={"serving": entry})
    done = f"refit on {entry['interactions']:,} interactions in {entry['seconds']:.1f}s" if fresh else "kept"
    get_run_logger().info("version %d: serving model %s %s", version, entry["model"]["id"][:12], done)
    return entry


@task(name="retire-undecided")
def retire_task(
    version: int, actor: str, reason: str, registry_cfg: RegistryConfig, storage: StorageConfig
) -> None:
    """Leave the registry saying why a version has no decision: its judgement failed."""
    open_registry(registry_cfg, storage).retire_undecided(version, actor, reason)


def promote_model(settings: Settings, result: PipelineResult) -> dict[str, Any]:
    """Register, judge and maybe promote the model of a finished run (inside the pipeline flow)."""
    registered = register_task(result, settings.registry, settings.storage)
    actor = f"run {result.run_id}"
    if registered["decided_before"]:  # its decision stands; nothing moves
        if registered["champion"]:  # a champion from before serving refits gets its refit now
            refit_task(result.run_id, registered["version"], actor, settings.registry, settings.storage)
        return {**registered, "promoted": False}
    try:
        return _judge_and_promote(settings, result.run_id, registered, actor)
    except Exception as exc:
        reason = f"{actor}: judging failed, no decision ({type(exc).__name__}: {exc})"
        retired = retire_task(
            registered["version"], actor, reason, settings.registry, settings.storage, return_state=True
        )
        if not retired.is_completed():  # the registry itself is gone: `verify` reports the version
            get_run_logger().warning("version %d could not be retired: %s", registered["version"], retired)
        raise


def _judge_and_promote(
    settings: Settings, run_id: str, registered: dict[str, Any], actor: str
) -> dict[str, Any]:
    """Judge the registered version and move the champion to it if the policy (and a person) says so."""
    policy, storage, registry_cfg = settings.promotion, settings.storage, settings.registry
    version, reused = registered["version"], registered["reused"]
    for _ in range(_ATTEMPTS):
        judged = judge_task(
            run_id, version, policy, settings.evaluation, settings.seed, registry_cfg, storage
        )
        decision = Decision(**judged["decision"])
        outcome = {
            "version": version,
            "dataset": registered["dataset"],
            "reused": reused,
            "decided_before": False,
            "decision": judged["decision"],
            "decision_ref": judged["decision_ref"],
        }
        if not decision.promote:
            return {**outcome, "promoted": False}
        reason = decision.reason
        if policy.manual_approval:
            answer = pause_flow_run(
                wait_for_input=Approval.with_initial_data(
                    description=decision.markdown(), approve=True, reason=""
                ),
                timeout=policy.approval_timeout_seconds,
                poll_interval=2,  # how soon the flow notices the answer
            )
            if not answer.approve:
                return {**outcome, "promoted": False, "rejected_by_person": answer.reason}
            actor, reason = (
                f"{actor}, approved in the Prefect UI",
                f"{reason} Approved: {answer.reason}".strip(),
            )
        served = refit_task(run_id, version, actor, registry_cfg, storage)
        outcome["serving"] = served["model"]
        swapped = promote_task(
            run_id,
            version,
            decision.champion,
            actor,
            reason,
            judged["decision_ref"]["id"],
            registry_cfg,
            storage,
        )
        if not swapped["stale"]:
            return {**outcome, "promoted": True}
    raise RegistryError(f"the champion moved {_ATTEMPTS} times while version {version} was being judged")


def _registration(held: ModelVersion, reused: bool, decision: DecisionRecord | None) -> dict[str, Any]:
    """What promotion needs to know of a registration: the version, whether it was reused and, when an earlier
    decision about it stands (`decision`: the latest), that decision and a summary a person reads."""
    version, holds = held.version, CHAMPION in held.aliases
    outcome: dict[str, Any] = {
        "version": version,
        "dataset": held.dataset,
        "reused": reused,
        "decided_before": False,
        "champion": holds,
    }
    if not reused:
        return {**outcome, "summary": f"registered model version {version} ({held.model_name})"}
    outcome["decided_before"] = True
    if decision is not None:
        d = decision
        verdict = "promoted" if d.promoted else "not promoted"
        now = {(True, False): " (no longer the champion)", (False, True): " (now the champion)"}.get(
            (bool(d.promoted), holds), ""
        )
        outcome["decision"] = {"promote": bool(d.promoted), "reason": d.reason, "reference": d.reference}
        outcome["decision_id"] = d.decision_id
        outcome["summary"] = (
            f"version {version} reused (same model and data), decision: {verdict} against the {d.reference} "
            f"at {d.at[:19].replace('T', ' ')} UTC{now}. {d.reason}"
        )
    elif holds:  # promoted by hand, never judged: nothing to judge it against
        reason = "made the champion by hand, without a promotion decision"
        outcome["decision"] = {"promote": True, "reason": reason, "reference": "none"}
        outcome["summary"] = f"version {version} reused (same model and data), decision: {reason}"
    else:  # registered by a run that stopped before its judgement
        outcome["decided_before"] = False
        outcome["summary"] = f"version {version} reused (same model and data), never judged: judging it now"
    return outcome
