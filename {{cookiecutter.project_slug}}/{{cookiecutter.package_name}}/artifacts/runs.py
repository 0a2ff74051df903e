"""Run manifests and what is read from them: the catalog, lineage graphs and run comparisons.

A manifest is one JSON document per pipeline run, stored content-addressed and also by name at
`runs/<run_id>/manifest.json`. It holds everything needed to say what made each artifact (resolved config,
seeds, input file hashes, code and environment) and to rebuild it (`reproduce`). The functions below are
pure over manifests, except the few that read them from a store.

The manifest is immutable, but a run goes on after writing it (registration and promotion), so its outcome is
kept beside it in `runs/<run_id>/status.json`: `running` from before the manifest is written, then
`completed` or `failed` (with the step and the error). It also keeps what the run did to the registry (the
version it registered or reused, the decision stored about it, whether it was promoted): the record the
registry can be rebuilt from (`registry.rebuild_from_store`). A run SIGKILLed while running keeps
`running` with its host and pid, which `run_state` reads as `stopped` once that process is gone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from ..environment import normalised
from .locks import _alive
from .manifest import ManifestUnreadable, RunManifest, read_manifest
from .store import ArtifactRef, ArtifactStore

MANIFEST_NAME = "manifest.json"
STATUS_NAME = "status.json"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
STOPPED: Final = "stopped"  # never written: a `running` run whose process is gone (killed)

log = logging.getLogger(__name__)


class RunNotFound(LookupError):
    """No run, or more than one, matches the run id (or prefix) asked for."""


def write_manifest(store: ArtifactStore, manifest: RunManifest) -> tuple[ArtifactRef, str]:
    """Store the manifest content-addressed and by run id; returns its reference and its by-name URI."""
    ref = store.put_json(manifest.document(), kind="manifest")
    uri = store.write_text(f"runs/{manifest.run_id}/{MANIFEST_NAME}", store.get_bytes(ref).decode())
    return ref, uri


def list_runs(store: ArtifactStore, tags: Mapping[str, str] | None = None) -> list[RunManifest]:
    """Every run's manifest (upgraded to today's format), oldest first, keeping those that carry all of
    `tags`. A run's outcome is beside it (`read_status`, `run_statuses`)."""
    manifests = []
    for run_id in store.list("runs"):
        path = f"runs/{run_id}/{MANIFEST_NAME}"
        try:
            manifest = read_manifest(_read_json(store, path))
        except FileNotFoundError:
            continue  # a run that failed before writing its manifest
        except ValueError as exc:  # not JSON, not UTF-8, or not a manifest (ManifestUnreadable)
            # One damaged manifest must not hide every other run; `verify` reports it with the rest.
            problem = (
                str(exc) if isinstance(exc, ManifestUnreadable) else f"does not parse ({type(exc).__name__})"
            )
            log.warning("skipped run %s: %s %s; `verify` reports it", run_id, store.uri_of(path), problem)
            continue
        if all(manifest.tags.get(k) == v for k, v in (tags or {}).items()):
            manifests.append(manifest)
    return sorted(manifests, key=lambda m: (m.started_at, m.run_id))


def manifest_problem(document: Any) -> str | None:
    """Why a parsed JSON document cannot be read as a run manifest of any known format (None: it can)."""
    try:
        read_manifest(document)
    except ManifestUnreadable as exc:
        return str(exc)
    return None


def update_status(store: ArtifactStore, run_id: str, **fields: Any) -> dict[str, Any]:
    """Record how the run is going (`status`, `step`, `reason`) or what it did (`registry`: merged into what
    earlier updates recorded); returns the whole status as written."""
    current = read_status(store, run_id) or {}
    status = {**current, **fields, "at": _now()}
    if "registry" in fields:
        status["registry"] = {**current.get("registry", {}), **fields["registry"]}
    if fields.get("status") == RUNNING:  # who runs it, so a killed run can be told from a running one
        status |= {"host": socket.gethostname(), "pid": os.getpid()}
    if fields.get("status") == COMPLETED:
        status.pop("reason", None)
    store.write_text(f"runs/{run_id}/{STATUS_NAME}", json.dumps(status, indent=1, sort_keys=True) + "\n")
    return status


def read_status(store: ArtifactStore, run_id: str) -> dict[str, Any] | None:
    """The run's `status.json` as written; None for a run that never wrote one."""
    try:
        return _read_json(store, f"runs/{run_id}/{STATUS_NAME}")
    except FileNotFoundError:
        return None


def run_statuses(store: ArtifactStore) -> dict[str, dict[str, Any]]:
    """Every run's status by run id (runs without one left out), without reading the manifests."""
    found = {run_id: read_status(store, run_id) for run_id in store.list("runs")}
    return {run_id: status for run_id, status in found.items() if status is not None}


def run_state(status: Mapping[str, Any] | None) -> str:
    """What a status says now: `completed`, `failed`, `running`, or `stopped` (recorded as running, by a
    process on this host that is gone). A run from before statuses were kept wrote its manifest last."""
    if status is None:
        return COMPLETED
    state = str(status.get("status", COMPLETED))
    if state == RUNNING and status.get("host") == socket.gethostname() and not _alive(int(status["pid"])):
        return STOPPED
    return state


def find_run(store: ArtifactStore, key: str) -> RunManifest:
    """A run by id or unique id prefix; `latest` is the newest run."""
    runs = list_runs(store)
    if not runs:
        raise RunNotFound(f"no runs in {store.uri_of('runs')}")
    if key == "latest":
        return runs[-1]
    matches = [m for m in runs if m.run_id.startswith(key)]
    if len(matches) != 1:
        raise RunNotFound(f"{'no' if not matches else 'more than one'} run matches {key!r}")
    return matches[0]


def find_artifact(store: ArtifactStore, key: str) -> tuple[RunManifest, str]:
    """The newest run that produced an artifact whose id starts with `key`, and that artifact's name.

    A run id (or `latest`) names that run's model.
    """
    try:
        return find_run(store, key), "model"
    except RunNotFound:
        pass
    for manifest in reversed(list_runs(store)):
        for name, entry in manifest.artifacts.items():
            if len(key) >= 6 and entry.id.startswith(key):
                return manifest, name
    raise RunNotFound(f"no run or artifact matches {key!r}")


def lineage_chain(manifest: RunManifest, focus: str) -> list[str]:
    """Names of `focus` and everything it was made from, inputs first (the chain to print)."""
    artifacts = manifest.artifacts
    seen: list[str] = []

    def visit(name: str) -> None:
        for parent in artifacts[name].parents if name in artifacts else []:
            visit(parent)
        if name not in seen:
            seen.append(name)

    visit(focus)
    return seen


def describe_chain(manifest: RunManifest, focus: str) -> list[str]:
    """One line per step: what `focus` came from (down to the raw input bytes), then what came from it; and
    the split's leakage check where the chain passes through the split."""
    artifacts, lines = manifest.artifacts, []
    downstream = [n for n in lineage_order(manifest) if n != focus and focus in lineage_chain(manifest, n)]
    chain = lineage_chain(manifest, focus) + downstream
    for name in chain:
        if name == "inputs":
            files = manifest.dataset.inputs or [{"path": f"(synthetic, seed {manifest.seed})"}]
            for f in files:
                detail = f" sha256 {f['sha256'][:12]} {f['size']:,} bytes" if "sha256" in f else ""
                lines.append(f"input     {f['path']}{detail}")
            continue
        entry = artifacts[name]
        parents = ", ".join(entry.parents)
        marker = "  <- asked" if name == focus else ""
        lines.append(f"{name:<9} {entry.id[:12]}  task {entry.task:<8} from {parents}{marker}")
    if {"train", "test"} & set(chain):
        lines.append(f"leakage   {leakage_summary(manifest)}")
    return lines


def leakage_summary(manifest: RunManifest) -> str:
    """The split's leakage check in one line: verdict, each check's figure, the parts it was run on."""
    check = manifest.split.leakage
    if check is None:
        return "not checked (a run from before the split's leakage check)"
    verdict = "passed" if check.passed else "FAILED"
    figures = "; ".join(f"{c['name']}: {c['detail']}" for c in check.checks)
    return f"{verdict}: {figures} (train {check.train[:12]}, test {check.test[:12]})"


def mermaid(manifest: RunManifest) -> str:
    """The run's lineage as a Mermaid flowchart (renders on GitHub, in many editors and in the Prefect UI)."""
    lines = ["flowchart LR"]
    inputs = manifest.dataset.inputs
    label = (
        "<br/>".join(f"{f['path']}<br/>sha256 {f['sha256'][:12]}" for f in inputs) or "synthetic generator"
    )
    lines.append(f'  inputs["inputs<br/>{label}"]')
    check = manifest.split.leakage
    verdicts = {"leakage_check": f"<br/>{'passed' if check.passed else 'FAILED'}"} if check else {}
    for name, entry in manifest.artifacts.items():
        lines.append(f'  {name}["{name}<br/>{entry.id[:12]}{verdicts.get(name, "")}"]')
        lines += [f"  {parent} -->|{entry.task}| {name}" for parent in entry.parents]
    return "\n".join(lines) + "\n"


def compare(a: RunManifest, b: RunManifest) -> dict[str, list[tuple[str, Any, Any]]]:
    """What differs between two runs: config values, data, artifacts, metrics, environment and packages
    (every distribution whose version differs, or that only one run had: None on the other side)."""
    config_a, config_b = flatten(a.config), flatten(b.config)
    keys = sorted(set(config_a) | set(config_b))
    env_a, env_b = _env_summary(a), _env_summary(b)
    data_a, data_b = a.dataset.model_dump(), b.dataset.model_dump()
    ids_a, ids_b = _artifact_ids(a), _artifact_ids(b)
    return {
        "config": [(k, config_a.get(k), config_b.get(k)) for k in keys if config_a.get(k) != config_b.get(k)],
        "data": [
            (k, data_a.get(k), data_b.get(k))
            for k in ("id", "rows", "users", "items")
            if data_a.get(k) != data_b.get(k)
        ],
        "artifacts": [
            (name, ids_a.get(name), ids_b.get(name))
            for name in sorted(set(ids_a) | set(ids_b))
            if ids_a.get(name) != ids_b.get(name)
        ],
        "metrics": [(k, a.metrics.get(k), b.metrics.get(k)) for k in sorted(set(a.metrics) | set(b.metrics))],
        "environment": [
            (k, env_a.get(k), env_b.get(k)) for k in sorted(env_a) if env_a.get(k) != env_b.get(k)
        ],
        "packages": _package_changes(a, b),
    }


def first_difference(expected: RunManifest, actual: RunManifest) -> str | None:
    """The first artifact, in pipeline order, whose id differs between two manifests (or None)."""
    for f_exp, f_act in zip(expected.dataset.inputs, actual.dataset.inputs, strict=False):
        if f_exp["sha256"] != f_act["sha256"]:
            return (
                f"input {f_exp['path']}: sha256 {f_exp['sha256'][:12]} expected, {f_act['sha256'][:12]} now"
            )
    if len(expected.dataset.inputs) != len(actual.dataset.inputs):
        return "inputs: a different set of input files"
    rebuilt = _artifact_ids(actual)
    for name in lineage_order(expected):
        want, got = expected.artifacts[name].id, rebuilt.get(name)
        if want != got:
            task = expected.artifacts[name].task
            return f"{name} (task {task}): {want[:12]} expected, {str(got)[:12]} rebuilt"
    return None


def lineage_order(manifest: RunManifest) -> list[str]:
    """All artifact names, each after its parents."""
    order: list[str] = []
    for name in manifest.artifacts:
        order += [n for n in lineage_chain(manifest, name) if n not in order and n != "inputs"]
    return order


def _artifact_ids(manifest: RunManifest) -> dict[str, str]:
    return {name: entry.id for name, entry in manifest.artifacts.items()}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as `section.key` -> value."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out |= flatten(inner, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): value}


def _env_summary(manifest: RunManifest) -> dict[str, Any]:
    env = manifest.environment
    return {
        "python": env.python,
        "torch": env.torch.version,
        "torch threads": env.torch.threads,
        "code": env.code.package_sha256[:12],
        "git_commit": env.code.git_commit,
        "cpu": env.hardware.get("cpu"),
        "lock": env.lock.sha256[:12] if env.lock else None,
        "digest": env.digest[:12] if env.digest else None,
    }


def _package_changes(a: RunManifest, b: RunManifest) -> list[tuple[str, Any, Any]]:
    versions_a, versions_b = _versions(a), _versions(b)
    return [
        (name, versions_a.get(name), versions_b.get(name))
        for name in sorted(set(versions_a) | set(versions_b))
        if versions_a.get(name) != versions_b.get(name)
    ]


def _versions(manifest: RunManifest) -> dict[str, str]:
    """name -> version; names normalised, so a manifest that recorded `PyYAML` matches one with `pyyaml`."""
    pairs = (package.partition("==") for package in manifest.environment.packages)
    return {normalised(name): version for name, _, version in pairs}


def _read_json(store: ArtifactStore, relative: str) -> dict[str, Any]:
    return json.loads(store.read_text(relative))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
