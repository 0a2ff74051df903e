"""How the pipeline runs its steps: each task's result kept in the store and checked when reused, and its
state, wall time, peak memory and parameters noted for the manifest (`timed`); steps that end after the
manifest is written measured alike (`measured`)."""

from __future__ import annotations

import inspect
import time
from typing import Any

from prefect import get_run_logger
from pydantic import BaseModel

from flows.caching import in_store
from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, ArtifactStore, open_store
from {{ cookiecutter.package_name }}.resources import PeakMemory
from {{ cookiecutter.package_name }}.settings import StorageConfig


def timed(tasks: dict[str, dict[str, Any]], storage: StorageConfig, task_fn: Any, *args: Any) -> Any:
    """Call a task (its result kept in the store); note its parameters, final state (Completed or Cached),
    wall time and peak memory.

    Tasks run in this process, so `peak_rss_mb` is the process's largest resident size while the task ran:
    what a machine needs to run that step here (it includes what earlier steps left allocated).
    """
    started = time.perf_counter()
    with PeakMemory() as memory:
        state = in_store(task_fn, storage)(*args, return_state=True)
        damaged = _damaged(state, open_store(storage))
        if damaged:
            get_run_logger().warning(
                "%s: cached result names missing or corrupt objects %s; computing it again",
                task_fn.name,
                ", ".join(ref.id[:12] for ref in damaged),
            )
            state = in_store(task_fn.with_options(refresh_cache=True), storage)(*args, return_state=True)
    result = state.result()  # re-raises the task's error, which fails the flow
    names = inspect.signature(task_fn.fn).parameters
    tasks[task_fn.name] = {
        "state": state.name,
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mb": round(memory.peak_rss_mb, 1),
        "parameters": {name: _plain(value) for name, value in zip(names, args, strict=False)},
        **({"repaired": [ref.id for ref in damaged]} if damaged else {}),
    }
    return result


def _damaged(state: Any, store: ArtifactStore) -> list[ArtifactRef]:
    """The objects a cached result names that are gone or no longer hash to their ids (each read in full:
    about 1 s per GB on local disk, small next to the step it saves)."""
    if state.name != "Cached":
        return []
    return [ref for ref in _refs(state.result()) if not store.is_whole(ref)]


def _refs(value: Any) -> list[ArtifactRef]:
    """Every artifact reference inside a task's result (a reference, or lists and dicts holding some)."""
    if isinstance(value, ArtifactRef):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [ref for inner in value for ref in _refs(inner)]
    return []


def measured(into: dict[str, dict[str, float]], name: str, step: Any, *args: Any) -> Any:
    """Call `step`, noting its wall time and peak memory (as `timed` does) under `name`."""
    started = time.perf_counter()
    with PeakMemory() as memory:
        result = step(*args)
    into[name] = {
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mb": round(memory.peak_rss_mb, 1),
    }
    return result


def _plain(value: Any) -> Any:
    """A task argument as the manifest records it: config sections as values, artifacts by id."""
    if isinstance(value, ArtifactRef):
        return f"artifact:{value.id}"
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
