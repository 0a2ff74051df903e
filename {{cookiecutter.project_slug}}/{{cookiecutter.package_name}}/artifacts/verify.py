"""`verify`: read a whole store and name everything in it that is not whole.

Four kinds of record are checked, cheapest last because they reuse what the first pass learnt:

- objects: every file under `objects/` is named `<id><suffix>` in the folder `id[:2]`, and its bytes hash to
  that id (each object is read once, in full);
- manifests: every `runs/<run>/manifest.json` there is parses, names its own run, is the same bytes as its
  content-addressed copy, and every artifact it lists is a whole object;
- the snapshot pointer and its history: each parses, its snapshot and batches are whole objects, and the
  current pointer is the latest move in the history;
- the registry: each version's model, manifest and other artifacts, the model serving it (its refit), and each
  promotion decision, are whole.

A problem names the record by id prefix and where it lives; `reproduce` uses `check_run` on the run it
rebuilds, so "reproduced" also means the stored bytes are the ones the manifest names.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..settings import RegistryConfig, StorageConfig
from .landing import CURRENT
from .manifest import RunManifest
from .registry import Registry, open_registry, registry_url
from .runs import MANIFEST_NAME, manifest_problem
from .store import OBJECTS, ArtifactRef, ArtifactStore

HISTORY = "snapshots/history"


@dataclass(frozen=True)
class Problem:
    """One thing in the store or registry that is not whole, printed as one line (`str`)."""

    kind: str  # object | manifest | snapshot | registry
    id: str  # the id (prefix) of what is wrong, or the run or version it belongs to
    path: str  # where: a path inside the store, or a registry version
    what: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id[:12] or '-'} {self.path}: {self.what}"


@dataclass(frozen=True)
class Report:
    """What a `verify` found: its problems, how many records of each kind it read, and how long it took."""

    problems: list[Problem]
    checked: dict[str, int] = field(default_factory=dict)  # records read, by kind
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether nothing was wrong (else `verify` exits with status 1)."""
        return not self.problems

    def summary(self) -> str:
        """One line: the records read by kind, the verdict and the time taken."""
        counts = ", ".join(f"{n:,} {kind}" for kind, n in self.checked.items())
        verdict = "all whole" if self.ok else f"{len(self.problems)} problem(s)"
        return f"{counts}: {verdict} ({self.seconds:.1f} s)"


class _Objects:
    """What the object pass found: the whole objects by path, and the paths of each id."""

    def __init__(self, whole: set[str], by_id: dict[str, list[str]]) -> None:
        self.whole, self.by_id = whole, by_id

    def check(self, ref: ArtifactRef, store: ArtifactStore) -> str | None:
        """Why `ref` is not a whole object of this store (None when it is)."""
        try:
            path = store.locate(ref)
        except ValueError as exc:
            return str(exc)
        if path in self.whole:
            return None
        return "corrupt (bytes do not hash to the id)" if path in self.by_id.get(ref.id, []) else "missing"

    def check_id(self, digest: str) -> str | None:
        """Like `check`, for a record that keeps only an id (any suffix)."""
        paths = self.by_id.get(digest, [])
        if any(p in self.whole for p in paths):
            return None
        return "corrupt (bytes do not hash to the id)" if paths else "missing"


def verify_store(store: ArtifactStore, registry: Registry | None) -> Report:
    """Check every object, manifest, snapshot pointer and (given a registry) registry reference."""
    started = time.perf_counter()
    paths = store.objects()
    problems, objects = _check_objects(store, paths)
    checked = {"objects": len(paths)}
    manifests = store.list("runs")
    problems += _check_manifests(store, objects, manifests)
    checked["manifests"] = len(manifests)
    pointers = [CURRENT] * store.exists(CURRENT) + [f"{HISTORY}/{n}" for n in store.list(HISTORY)]
    problems += _check_snapshots(store, objects, pointers)
    checked["snapshot pointers"] = len(pointers)
    if registry is not None:
        found, versions = _check_registry(store, objects, registry)
        problems += found
        checked["registry versions"] = versions
    return Report(problems, checked, time.perf_counter() - started)


def existing_registry(cfg: RegistryConfig, storage: StorageConfig) -> Registry | None:
    """The configured registry, or None where it is a SQLite file not made yet (verify creates nothing)."""
    url = registry_url(cfg, storage)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return None
    return open_registry(cfg, storage)


def check_run(store: ArtifactStore, manifest: RunManifest) -> list[Problem]:
    """The artifacts of one run that are missing from the store or no longer hash to their ids."""
    problems = []
    for name, entry in manifest.artifacts.items():
        ref = entry.ref()
        if not store.is_whole(ref):
            where = f"{_where(store, ref)} ({name} of run {manifest.run_id})"
            problems.append(Problem("object", ref.id, where, "missing or corrupt"))
    return problems


# -- the passes ----------------------------------------------------------------------------------------------


def _check_objects(store: ArtifactStore, paths: list[str]) -> tuple[list[Problem], _Objects]:
    problems: list[Problem] = []
    whole: set[str] = set()
    by_id: dict[str, list[str]] = {}
    for path in paths:
        name, folder = Path(path).name, Path(path).parent.name
        digest = name[:64]
        if len(digest) < 64 or folder != digest[:2] or Path(path).parent.parent.name != OBJECTS:
            problems.append(Problem("object", name, path, "not named <sha256><suffix> in its folder"))
            continue
        by_id.setdefault(digest, []).append(path)
        if store.digest(path) == digest:
            whole.add(path)
        else:
            problems.append(Problem("object", digest, path, "corrupt: its bytes do not hash to its id"))
    return problems, _Objects(whole, by_id)


def _check_manifests(store: ArtifactStore, objects: _Objects, runs: Iterable[str]) -> list[Problem]:
    problems = []
    for run in runs:
        path = f"runs/{run}/{MANIFEST_NAME}"
        try:
            data = store.read_bytes(path)
            manifest = json.loads(data)
            entries = manifest["artifacts"].items()
            refs = [(name, _ref(entry)) for name, entry in entries]
        except FileNotFoundError:
            continue  # a run that failed before writing its manifest
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            problems.append(Problem("manifest", run, path, f"does not parse: {type(exc).__name__} {exc}"))
            continue
        problem = manifest_problem(manifest)
        if problem is not None:
            problems.append(Problem("manifest", run, path, problem))
            continue
        if manifest.get("run_id") != run:
            problems.append(Problem("manifest", run, path, f"names another run: {manifest.get('run_id')}"))
        copy = hashlib.sha256(data).hexdigest()
        if objects.check_id(copy) is not None:
            problems.append(
                Problem("manifest", run, path, f"differs from its stored copy (sha256 {copy[:12]})")
            )
        for name, ref in refs:
            why = objects.check(ref, store)
            if why is not None:
                problems.append(Problem("object", ref.id, f"{_where(store, ref)} ({name} in {path})", why))
    return problems


def _check_snapshots(store: ArtifactStore, objects: _Objects, pointers: list[str]) -> list[Problem]:
    problems, texts = [], {}
    for path in pointers:
        try:
            text = store.read_text(path)
            pointer = json.loads(text)
            snapshot = _ref(pointer["snapshot"])
            batches = [batch["artifact"] for batch in pointer.get("batches", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            problems.append(Problem("snapshot", "", path, f"does not parse: {type(exc).__name__} {exc}"))
            continue
        texts[path] = text
        why = objects.check(snapshot, store)
        if why is not None:
            problems.append(
                Problem("object", snapshot.id, f"{_where(store, snapshot)} (snapshot in {path})", why)
            )
        for digest in batches:
            why = objects.check_id(digest)
            if why is not None:
                problems.append(Problem("object", digest, f"batch in {path}", why))
    history = [texts[p] for p in pointers if p.startswith(HISTORY) and p in texts]
    if CURRENT in texts and (not history or texts[CURRENT] != history[-1]):
        problems.append(Problem("snapshot", "", CURRENT, "is not the latest move in snapshots/history"))
    return problems


def _check_registry(store: ArtifactStore, objects: _Objects, registry: Registry) -> tuple[list[Problem], int]:
    problems: list[Problem] = []
    try:
        versions, decisions = registry.versions(), registry.decisions()
    except SQLAlchemyError as exc:
        return [Problem("registry", "", "registry", f"unreadable: {type(exc).__name__}")], 0
    for v in versions:
        where = f"registry version {v.version} (run {v.run_id})"
        # The model's own columns (what `models show` prints) and the artifacts serving and promotion read.
        refs = [("model", ArtifactRef(id=v.model_id, uri=v.model_uri, kind="model", size=0))]
        try:
            refs += [(name, _ref(entry)) for name, entry in v.artifacts.items()]
            if v.serving:  # the refit `recommend` serves once the version is promoted
                refs.append(("serving model", _ref(v.serving["model"])))
                if "top" in v.serving:  # its top table, which `recommend --user` reads (none before tables)
                    refs.append(("serving top table", _ref(v.serving["top"])))
        except (KeyError, TypeError) as exc:
            problems.append(Problem("registry", v.model_id, where, f"unreadable artifacts: {exc}"))
        seen = set()
        for name, ref in refs:
            why = objects.check(ref, store)
            if why is not None and (ref.id, _where(store, ref)) not in seen:
                seen.add((ref.id, _where(store, ref)))
                problems.append(Problem("registry", ref.id, f"{where}: {name} {_where(store, ref)}", why))
        why = objects.check_id(v.manifest_id)
        if why is not None:
            problems.append(Problem("registry", v.manifest_id, f"{where}: manifest", why))
    for d in decisions:
        why = objects.check_id(d.decision_id)
        if why is not None:
            where = f"registry decision {d.id} (version {d.version})"
            problems.append(Problem("registry", d.decision_id, where, why))
    return problems, len(versions)


# -- helpers -------------------------------------------------------------------------------------------------


def _ref(entry: Mapping[str, Any]) -> ArtifactRef:
    return ArtifactRef(**{k: entry[k] for k in ("id", "uri", "kind", "size")})


def _where(store: ArtifactStore, ref: ArtifactRef) -> str:
    try:
        return store.locate(ref)
    except ValueError:
        return ref.uri
