"""Create the process work pool, or update it, so that its flow runs start in the worker's directory.

A process worker otherwise starts each flow run in a new temporary directory, where the relative entrypoints
and config files of deployments/prefect.yaml are not found. Run this against the server the worker uses,
then start the worker from the project root (the worker image does both):
    python deployments/work_pool.py local-process
    prefect worker start --pool local-process --limit 1
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

# Resolved by each worker against its own working directory.
WORKING_DIR = "."


def with_working_dir(template: dict[str, Any]) -> dict[str, Any]:
    """`template` with the flow runs' working directory defaulting to WORKING_DIR (other fields kept)."""
    variables = template["variables"]
    properties = {**variables["properties"]}
    properties["working_dir"] = {**properties["working_dir"], "default": WORKING_DIR}
    return {**template, "variables": {**variables, "properties": properties}}


async def ensure_pool(name: str) -> None:
    """Create the process pool `name`, or bring an existing one's working directory default in line; a pool
    of another type is refused (its runs would not start in the project)."""
    async with get_client() as client:
        try:
            pool = await client.read_work_pool(name)
        except ObjectNotFound:
            template = with_working_dir(ProcessWorker.get_default_base_job_template())
            pool = WorkPoolCreate(name=name, type="process", base_job_template=template)
            await client.create_work_pool(pool)
            print(f"created process work pool '{name}' (flow runs start in the worker's directory)")
            return
        if pool.type != "process":
            raise SystemExit(f"work pool '{name}' is of type '{pool.type}', not 'process'")
        template = with_working_dir(pool.base_job_template)
        if template != pool.base_job_template:
            await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
            print(f"work pool '{name}': flow runs now start in the worker's directory")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python deployments/work_pool.py <pool name>")
    asyncio.run(ensure_pool(sys.argv[1]))
