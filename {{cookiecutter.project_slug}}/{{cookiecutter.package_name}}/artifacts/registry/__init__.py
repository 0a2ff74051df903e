"""The model registry: numbered versions of trained models, the `champion` and `challenger` aliases, an
append-only history of every alias move and version reuse, and the drift events the monitor emitted.

Champions are per dataset. Every version carries the name of the dataset it was trained on
(`data.name`, else derived from the data settings: `synthetic`, `ml-100k`, ...), and the `champion` and
`challenger` aliases, their history and the promotion decisions are kept per dataset: a model is judged
against, and may replace, only the champion of its own dataset. Version numbers are global.

A version points at artifacts that already live in the store (model file, snapshot, run manifest, the split
and per-user metrics it was judged on); the registry holds no weights, only references and metrics, so it
stays small and any SQLAlchemy database can hold it: a SQLite file by default, PostgreSQL for a team.

A version is one model on one dataset: a run whose model bytes and snapshot equal an existing version's (a
fully cached rerun, a retrain on data that did not change) gets that version back, and the history records
who asked (action `reuse`, no alias moved). The check and the insert share one locked transaction, so two
identical runs at once end with one version. The monitor's drift acknowledgements are kept the same way:
of two monitors at once, one emits (see alerts.py for when an event is due).

Once promoted, a version is served by a model refit on its whole snapshot (serving.py): the version keeps
that model's reference in `serving`, beside the evaluated model every judgement keeps using.

Read in this order:
  records.py     the names, errors and frozen records the registry hands out
  tables.py      the tables as the code uses them (the schema at the newest migration)
  schema.py      the engine, and the schema brought to the newest migration on open, under the write lock
  migrations/    Alembic's revisions, one per schema change (README, "Registry schema migrations")
  queries.py     the statements an alias move and the history are made of
  core.py        the Registry: register, promote, rollback, decisions, history, drift acknowledgements
  opening.py     the configured registry (`open_registry`), refused when empty while runs say they used it
  rebuild.py     a lost registry filled again from the runs' manifests (`<package> models rebuild`)
"""

from .core import Registry
from .opening import open_registry, registry_problems, registry_url
from .rebuild import Rebuilt, rebuild_from_store
from .records import (
    ALIASES,
    CHALLENGER,
    CHAMPION,
    NO_ALIAS,
    REBUILT,
    SQLITE_NAME,
    UNDECIDED,
    UNKNOWN_DATASET,
    UPGRADED,
    AliasMove,
    DecisionRecord,
    ModelVersion,
    RegistryDamaged,
    RegistryError,
    StaleAlias,
    VersionNotFound,
    default_actor,
)

__all__ = [
    "ALIASES",
    "CHALLENGER",
    "CHAMPION",
    "NO_ALIAS",
    "REBUILT",
    "SQLITE_NAME",
    "UNDECIDED",
    "UNKNOWN_DATASET",
    "UPGRADED",
    "AliasMove",
    "DecisionRecord",
    "ModelVersion",
    "Rebuilt",
    "Registry",
    "RegistryDamaged",
    "RegistryError",
    "StaleAlias",
    "VersionNotFound",
    "default_actor",
    "open_registry",
    "rebuild_from_store",
    "registry_problems",
    "registry_url",
]
