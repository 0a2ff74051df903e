"""The run contract: what a pipeline run records (`RunManifest`) and returns (`PipelineResult`), typed.

The manifest is built here (`build_manifest`), by the core, from what the flow's tasks produced; the flow only
gathers those values. It is stored as JSON; `read_manifest` reads one back through an explicit upgrade, so a
manifest written by an earlier release (format 1: before dataset names, per-task memory and the flows' hash)
is read as today's. Everything downstream (the catalog, the registry, reports, the command line) takes these
models, so a misspelt key is an error where it is written, not a silent `None` where it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .store import ArtifactRef

FORMAT = 2


class _Record(BaseModel):
    # A field this release does not know is refused when written, and kept when read (a later release's).
    model_config = ConfigDict(extra="allow", frozen=True)


class ArtifactEntry(_Record):
    """One artifact as a manifest lists it: its reference, the task that made it, what it was made from."""

    id: str
    uri: str
    kind: str
    size: int
    task: str
    parents: list[str] = Field(default_factory=list)

    def ref(self) -> ArtifactRef:
        """The store reference of this artifact."""
        return ArtifactRef(id=self.id, uri=self.uri, kind=self.kind, size=self.size)

    @classmethod
    def of(cls, ref: ArtifactRef, task: str, parents: list[str]) -> ArtifactEntry:
        """The entry of `ref`, made by `task` from the artifacts named `parents`."""
        return cls(**ref.model_dump(), task=task, parents=parents)


class TaskRecord(_Record):
    """One task of a run: its final state (Completed or Cached), cost, and parameters as recorded."""

    state: str
    seconds: float
    peak_rss_mb: float | None = None  # None: a run from before memory was measured
    parameters: dict[str, Any] = Field(default_factory=dict)
    repaired: list[str] = Field(default_factory=list)  # ids of damaged cached objects computed again


class StepCost(_Record):
    """Wall time and peak resident memory of a step that ends after the manifest is written."""

    seconds: float
    peak_rss_mb: float


class CodeVersion(_Record):
    """The code a run ran: hashes of the package and of flows/, and the git state where there is one."""

    package_sha256: str
    flows_sha256: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None


class TorchSettings(_Record):
    """Torch's version and what decides its bytes: thread count and determinism switches."""

    version: str
    deterministic_algorithms: bool
    threads: int
    cudnn_deterministic: bool


class LockFile(_Record):
    """The project's lock file for the run's Python, and its sha256."""

    path: str
    sha256: str


class Environment(_Record):
    """What a run ran on (`environment.capture`)."""

    python: str
    implementation: str
    platform: str
    user: str
    code: CodeVersion
    packages: list[str]
    hardware: dict[str, Any]
    torch: TorchSettings
    lock: LockFile | None = None
    # sha256 of `packages` and the lock's hash: part of every cached task's key. None: a run from before.
    digest: str | None = None


class DatasetInfo(_Record):
    """The snapshot a run trained on: its registry name, id, source, input files and size."""

    name: str
    id: str
    source: str
    inputs: list[dict[str, Any]]
    rows: int
    users: int
    items: int
    first_timestamp: int | None = None
    last_timestamp: int | None = None


class LeakageRecord(_Record):
    """The split's leakage check (`data.leakage.LeakageCheck`), with the ids (content hashes) of the parts it
    checked."""

    passed: bool
    checks: list[dict[str, Any]]  # name, passed, detail
    shared_pairs: int
    cutoff: int | None = None
    train: str
    test: str


class SplitInfo(_Record):
    """How the snapshot was split, the size of each part, and the leakage check (None: a run from before)."""

    strategy: str
    train_rows: int
    test_rows: int
    leakage: LeakageRecord | None = None


class RunManifest(_Record):
    """Everything needed to say what made each artifact of a run, and to rebuild it (`reproduce`)."""

    format: int = FORMAT
    run_id: str
    flow_run_name: str | None = None
    started_at: str
    finished_at: str
    tags: dict[str, str] = Field(default_factory=dict)
    model: str
    seed: int
    seeds: dict[str, int]
    config_fingerprint: str
    config: dict[str, Any]
    dataset: DatasetInfo
    split: SplitInfo
    validation: str
    metrics: dict[str, float]
    metric_intervals: dict[str, list[float]] = Field(default_factory=dict)
    artifacts: dict[str, ArtifactEntry]
    tasks: dict[str, TaskRecord]
    environment: Environment

    def artifact(self, name: str) -> ArtifactEntry:
        """The artifact called `name` (`model`, `snapshot`, ...)."""
        return self.artifacts[name]

    def document(self) -> dict[str, Any]:
        """The manifest as the JSON document stored for it."""
        return self.model_dump(mode="json")


class RunOutputs(_Record):
    """Where a run's record is (paths inside the store, and the store's URI)."""

    manifest: str
    manifest_id: str
    report: str
    lineage: str
    store: str


class PipelineResult(RunManifest):
    """What the pipeline flow returns: its manifest, where the record went, the promotion's outcome (when
    promotion is on) and the cost of the steps after the manifest."""

    outputs: RunOutputs
    promotion: dict[str, Any] | None = None
    after_manifest: dict[str, StepCost] = Field(default_factory=dict)


def leakage_record(check: Mapping[str, Any], train_id: str, test_id: str) -> LeakageRecord:
    """The manifest's record of a split's leakage check (`LeakageCheck.document()` as stored) and the ids of
    the two parts it was run on."""
    return LeakageRecord(
        passed=check["passed"],
        checks=check["checks"],
        shared_pairs=check["shared_pairs"],
        cutoff=check["cutoff"],
        train=train_id,
        test=test_id,
    )


class ManifestUnreadable(ValueError):
    """A stored document that is not a run manifest of any known format."""


def build_manifest(
    *,
    run_id: str,
    flow_run_name: str | None,
    started_at: str,
    finished_at: str,
    settings: Any,
    dataset: Mapping[str, Any],
    split: Mapping[str, Any],
    validation: str,
    metrics: Mapping[str, float],
    metric_intervals: Mapping[str, list[float]],
    artifacts: Mapping[str, ArtifactEntry],
    tasks: Mapping[str, Mapping[str, Any]],
    environment: Mapping[str, Any],
) -> RunManifest:
    """The manifest of one pipeline run. `settings` is the run's `Settings`: its seed, tags, model, resolved
    config and fingerprint are recorded as they are; the rest is what the run's steps produced."""
    return RunManifest(
        run_id=run_id,
        flow_run_name=flow_run_name,
        started_at=started_at,
        finished_at=finished_at,
        tags=dict(settings.tags),
        model=settings.model.name,
        seed=settings.seed,
        # One seed drives every random step; listed per step so a reader need not know that.
        seeds={"data": settings.seed, "split": settings.seed, "train": settings.seed},
        config_fingerprint=settings.fingerprint(),
        config=settings.resolved(),
        dataset=DatasetInfo(**dataset),
        split=SplitInfo(**split),
        validation=validation,
        metrics=dict(metrics),
        metric_intervals={name: list(bounds) for name, bounds in metric_intervals.items()},
        artifacts=dict(artifacts),
        tasks={name: TaskRecord(**record) for name, record in tasks.items()},
        environment=Environment(**environment),
    )


def read_manifest(document: Any) -> RunManifest:
    """A stored manifest as today's `RunManifest`, upgraded from an earlier format where needed; raises
    `ManifestUnreadable` with the reason when it is not a manifest."""
    if not isinstance(document, dict):
        raise ManifestUnreadable(f"is a JSON {type(document).__name__}, not a manifest")
    version = document.get("format", 1)
    if version not in _UPGRADES and version != FORMAT:
        raise ManifestUnreadable(f"has format {version!r}; this release reads formats 1 to {FORMAT}")
    while version != FORMAT:
        document, version = _UPGRADES[version](document), version + 1
    try:
        return RunManifest.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise ManifestUnreadable(f"is not a run manifest ({problems})") from None


def dataset_name_of(document: Any) -> str:
    """The dataset a stored manifest's run trained on, read through the upgrades but without validating the
    rest (the registry names datasets even from manifests an older release wrote partly)."""
    if not isinstance(document, dict):
        raise ManifestUnreadable(f"is a JSON {type(document).__name__}, not a manifest")
    version = document.get("format", 1)
    while version in _UPGRADES:
        document, version = _UPGRADES[version](document), version + 1
    name = (document.get("dataset") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise ManifestUnreadable("names no dataset")
    return name


def _from_format_1(document: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (to 2026-12-01) had no dataset name (the registry then knew one dataset, named as the config
    names it now); its tasks may lack memory figures and its code record the flows' hash (both optional)."""
    dataset = dict(document.get("dataset") or {})
    if "name" not in dataset:
        from ..settings import DataConfig  # the rule that names a dataset, applied to the run's own config

        data = (document.get("config") or {}).get("data") or {}
        try:
            dataset["name"] = DataConfig.model_validate(data).dataset_name()
        except ValueError:  # settings of an older release that no longer validate: read what they hold
            known = {k: v for k, v in data.items() if k in DataConfig.model_fields}
            dataset["name"] = DataConfig.model_construct(**known).dataset_name()
    return {**document, "dataset": dataset, "format": 2}


_UPGRADES = {1: _from_format_1}
