"""The cache policy of the pipeline's tasks: same inputs, same task source and same package code -> cache hit.

Prefect's TASK_SOURCE covers only a task's own lines; the work happens in the core package, so its source
hash (`environment.code_version`) is part of every key. Results are small JSON artifact references.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext

from ..environment import code_version


@dataclass
class PackageCode(CachePolicy):
    """Keys on the sha256 of the package's Python sources."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return _code_version()


@cache
def _code_version() -> str:
    return code_version()


PIPELINE_CACHE = INPUTS + TASK_SOURCE + PackageCode()
CACHED = {"cache_policy": PIPELINE_CACHE, "persist_result": True, "result_serializer": "json"}
