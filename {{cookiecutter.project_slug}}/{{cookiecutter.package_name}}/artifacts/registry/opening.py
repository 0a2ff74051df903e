"""Finding the registry and checking it against the store: its URL from the settings, `open_registry`
(which refuses a registry that is empty while the store's runs say they registered models in it) and
`registry_problems`, what `verify` reports."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from ...settings import PACKAGE, RegistryConfig, StorageConfig
from .. import runs
from ..store import ArtifactStore, local_root, open_store
from .core import Registry
from .records import CHAMPION, SQLITE_NAME, UNDECIDED, RegistryDamaged, RegistryError, where


def registry_url(cfg: RegistryConfig, storage: StorageConfig) -> str:
    """The configured URL (with the secret password filled in), or a SQLite file at a local store's root."""
    if cfg.url:
        url = make_url(cfg.url)
        if cfg.password is not None and url.password is None:
            url = url.set(password=cfg.password.get_secret_value())
        if cfg.secret_query:
            url = url.update_query_dict({k: v.get_secret_value() for k, v in cfg.secret_query.items()})
        return url.render_as_string(hide_password=False)
    if "://" in storage.uri and not storage.uri.startswith("file://"):
        # A SQLite file cannot live in object storage: keep it in the working directory (a team shares a
        # PostgreSQL registry instead, via registry.url).
        return f"sqlite:///{Path(SQLITE_NAME).resolve()}"
    root = local_root(storage.uri)
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / SQLITE_NAME}"


def open_registry(cfg: RegistryConfig, storage: StorageConfig) -> Registry:
    """The configured registry, refused (`RegistryDamaged`) when it is empty while the store's runs say they
    registered models in it."""
    store = open_store(storage)
    registry = Registry(registry_url(cfg, storage), store)
    if registry.is_empty():
        _refuse_if_runs_registered(registry.url, store)
    return registry


def registry_problems(url: str, store: ArtifactStore) -> list[str]:
    """What is wrong between the registry at `url` and the store's runs, one line each (for `verify`).

    The registry cannot be opened, or is empty or damaged while runs registered models; a version a run
    registered is missing or holds another model; a version has no promotion decision although its run
    failed or was killed while judging, with nothing in the history saying so.
    """
    try:
        registry = Registry(url, store)
        if registry.is_empty():
            _refuse_if_runs_registered(url, store)
    except RegistryError as exc:
        return [str(exc)]
    held = {v.version: v for v in registry.versions()}
    statuses = runs.run_statuses(store)
    problems = []
    for run_id, status in sorted(statuses.items()):
        noted = status.get("registry", {})
        if "version" not in noted:
            continue
        found = held.get(noted["version"])
        if found is None:
            problems.append(
                f"run {run_id}: registered version {noted['version']}, which {where(url)} does not hold"
            )
        elif noted.get("model_id", found.model_id) != found.model_id:
            problems.append(
                f"run {run_id}: registered model {noted['model_id'][:12]} as version {found.version}, but "
                f"{where(url)} holds model {found.model_id[:12]} there"
            )
    decided = {d.version for d in registry.decisions()}
    # Retired after a failed judgement: the history row names the version (a cleared challenger's as `from`).
    settled = {m.to_version or m.from_version for m in registry.history() if m.action == UNDECIDED}
    for v in held.values():
        if v.version in decided | settled or CHAMPION in v.aliases:
            continue
        state = runs.run_state(statuses.get(v.run_id))
        if state in (runs.FAILED, runs.STOPPED):
            problems.append(
                f"version {v.version}: no promotion decision, and its run {v.run_id} {state} at "
                f"{statuses[v.run_id].get('step', 'promotion')} without saying so in the registry "
                "(the next run of the same model and data judges it)"
            )
    return problems


def _refuse_if_runs_registered(url: str, store: ArtifactStore) -> None:
    registered = {
        run_id: status["registry"]["version"]
        for run_id, status in runs.run_statuses(store).items()
        if "version" in status.get("registry", {})
    }
    if registered:
        versions = sorted(set(registered.values()))
        raise RegistryDamaged(
            f"the registry {where(url)} is empty, but the store {store.uri_of('')} says {len(registered)} "
            f"runs registered models in it (versions {versions[0]}-{versions[-1]}): it was lost or replaced. "
            f"Rebuild it from the runs' manifests with `{PACKAGE} models rebuild`"
        )
