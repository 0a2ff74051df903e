"""What the registry hands out and refuses with: the alias and action names, its errors, the frozen records
of a version, an alias move and a decision, and the conversions between them and table rows."""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.engine import make_url

from ...alerts import Acknowledgement
from ...settings import redact_url
from .. import runs
from ..manifest import RunManifest, dataset_name_of
from ..store import ArtifactStore

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
ALIASES: Final = (CHAMPION, CHALLENGER)
NO_ALIAS: Final = ""  # the alias of a history row that moved none (a reuse)
UNDECIDED: Final = "undecided"  # the action of a version whose judgement failed
REBUILT: Final = "rebuild"  # the action of history rows written by `rebuild_from_store`
UPGRADED: Final = "upgrade"  # the action of the history row written when an older registry was upgraded
UNKNOWN_DATASET: Final = "unknown"  # an upgraded version whose run's manifest is no longer in the store
SQLITE_NAME: Final = "registry.sqlite"


class RegistryError(RuntimeError):
    """The base of the registry's errors: any refusal, or a database it cannot reach, as one line."""


class VersionNotFound(RegistryError, LookupError):
    """No version matches the number or alias asked for (or the dataset has none yet)."""


class RegistryDamaged(RegistryError):
    """The registry lost versions or tables the store says it held: refused rather than recreated empty."""


class StaleAlias(RegistryError):
    """The alias moved since the caller read it; judge again against the new holder."""


@dataclass(frozen=True)
class ModelVersion:
    """A registered model: its run, model and snapshot artifacts, metrics, and the aliases on it when read."""

    version: int
    dataset: str
    run_id: str
    created_at: str
    created_by: str
    model_name: str
    model_id: str
    model_uri: str
    snapshot_id: str
    manifest_id: str
    manifest_uri: str
    config_fingerprint: str
    metrics: dict[str, float]
    artifacts: dict[str, dict[str, Any]]
    serving: dict[str, Any] | None = None  # the refit served once promoted: {model: {id, uri, ...}, ...}
    aliases: tuple[str, ...] = field(default=())

    def artifact(self, name: str) -> dict[str, Any]:
        """One of the version's artifact refs (`model`, `snapshot`, `train`, `test`, `metrics_per_user`)."""
        return self.artifacts[name]


@dataclass(frozen=True)
class AliasMove:
    """A history row: an alias moved from one version to another (None: none), or a reuse (alias "")."""

    id: int
    at: str
    dataset: str
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    decision_id: str | None


@dataclass(frozen=True)
class DecisionRecord:
    """A promotion decision in brief (`promoted`: 0 or 1); the stored artifact `decision_id` holds it all."""

    id: int
    at: str
    version: int
    promoted: int
    reference: str
    reason: str
    decision_id: str


def default_actor() -> str:
    """Who is acting, for the history: the login name, or `unknown` where there is none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"


def now() -> str:
    """The time the registry stamps rows with: UTC, ISO 8601, to the millisecond (so it sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def where(url: str) -> str:
    """The registry as a person finds it: the SQLite file's path, or the URL without secrets."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database:
        return f"file {parsed.database}"
    return redact_url(url)


def stored_dataset(store: ArtifactStore, run_id: str, manifest_uri: str) -> str:
    """The dataset of the run that registered a version, from its manifest in the store (`unknown` when the
    manifest is gone, or names none; one written before names were recorded is read through its upgrade)."""
    for place in (f"runs/{run_id}/{runs.MANIFEST_NAME}", manifest_uri):
        try:
            return dataset_name_of(json.loads(store.read_text(store.relative(place))))
        except (OSError, ValueError):  # gone, unreadable, or not a manifest naming a dataset
            continue
    return UNKNOWN_DATASET


def version_row(manifest: RunManifest, manifest_id: str, manifest_uri: str, actor: str) -> dict[str, Any]:
    """The `model_versions` row of a finished run's model, from its manifest (stored as `manifest_id` at
    `manifest_uri`, a path inside the store)."""
    artifacts = manifest.artifacts
    return {
        "run_id": manifest.run_id,
        "created_at": now(),
        "created_by": actor,
        "model_name": manifest.model,
        "model_id": artifacts["model"].id,
        "model_uri": artifacts["model"].uri,
        "snapshot_id": artifacts["snapshot"].id,
        "manifest_id": manifest_id,
        "manifest_uri": manifest_uri,
        "config_fingerprint": manifest.config_fingerprint,
        "dataset": manifest.dataset.name,
        "metrics": json.dumps(manifest.metrics, sort_keys=True),
        "artifacts": json.dumps(
            {
                k: artifacts[k].model_dump()
                for k in ("model", "snapshot", "train", "test", "metrics_per_user")
            },
            sort_keys=True,
        ),
    }


def version_from_row(row: Any, aliases: tuple[str, ...]) -> ModelVersion:
    """A `model_versions` row read back, its JSON columns decoded, with the aliases that point at it."""
    values = dict(row)
    values["metrics"] = json.loads(values["metrics"])
    values["artifacts"] = json.loads(values["artifacts"])
    values["serving"] = json.loads(values["serving"]) if values["serving"] else None
    return ModelVersion(**values, aliases=aliases)


def acknowledgement_from_row(row: Any) -> Acknowledgement | None:
    """A `drift_events` row as the alerts module reads it; None for no row."""
    if row is None:
        return None
    return Acknowledgement(
        at=datetime.fromisoformat(row["at"]),
        champion=row["champion"],
        snapshot_id=row["snapshot_id"],
        signals=tuple(json.loads(row["signals"])),
        actor=row["actor"],
    )
