"""The cache policy of the pipeline's tasks, and where their results live.

Same inputs, same task source, same code and same installed packages -> cache hit. Prefect's TASK_SOURCE
covers only a task's own lines; the work happens in the core package and in the flows around it, so a hash of
both (package and `flows/`) is part of every key; so is the environment's digest (every installed
distribution's name and version, and the lock file's hash): upgrading torch or polars runs the steps again
instead of reusing what the old versions computed. Results are small JSON artifact references.

Results are kept in the project's artifact store (`<store>/prefect-results`, local or S3), not under
Prefect's home: a run from the CLI, from `serve` or from a worker then finds the others' cached results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypedDict, TypeVar

from prefect import Task
from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.filesystems import RemoteFileSystem, WritableFileSystem

from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.environment import code_version, current_digest
from {{ cookiecutter.package_name }}.settings import StorageConfig

FLOWS_DIR = Path(__file__).resolve().parent
PROJECT_DIR = FLOWS_DIR.parent
RESULTS = "prefect-results"


@dataclass
class CodeAndEnvironment(CachePolicy):
    """Keys on the sha256 of the package's and the flows' Python sources, and on the environment's digest
    (`environment.current_digest`: installed packages and the lock file)."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The part of a task's key that changes with the code or the installed packages."""
        return _code_and_environment()


def _code_and_environment() -> str:
    # Each part is computed once per process (and once for all the commands a warm process forks).
    return f"{code_version()}:{code_version(FLOWS_DIR)}:{current_digest(PROJECT_DIR)}"


PIPELINE_CACHE = INPUTS + TASK_SOURCE + CodeAndEnvironment()


class _CachedOptions(TypedDict):
    """The options of `@task(**CACHED)`, typed so the decorator's overloads still check each call."""

    cache_policy: CachePolicy
    persist_result: bool
    result_serializer: str


CACHED: _CachedOptions = {"cache_policy": PIPELINE_CACHE, "persist_result": True, "result_serializer": "json"}


def result_storage(storage: StorageConfig) -> Path | WritableFileSystem:
    """The folder of the artifact store that holds persisted task results (credentials from the settings)."""
    store = open_store(storage)
    uri = store.uri_of(RESULTS)
    if uri.startswith("file://"):
        return Path(store.root) / RESULTS
    return RemoteFileSystem(basepath=uri, settings=dict(store.fs.storage_options))


_P = ParamSpec("_P")
_R = TypeVar("_R")


def in_store(task: Task[_P, _R], storage: StorageConfig) -> Task[_P, _R]:
    """`task`, persisting its result in the artifact store (chosen per run: the store comes from the run's
    settings)."""
    where = result_storage(storage)
    if isinstance(where, Path):
        return task.with_options(result_storage=where)
    # Prefect asks for a block saved on the server, which would put the store's credentials in Prefect's
    # database. The flow's own process (and Dask, which gets the task pickled) only needs the object.
    stored = task.with_options()
    stored.result_storage = where
    return stored
