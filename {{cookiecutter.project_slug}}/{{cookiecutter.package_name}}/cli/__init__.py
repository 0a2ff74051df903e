"""The command line, one module per group of commands (`app` puts them together):

- pipeline: `run`, `reproduce`, `benchmark`, `config`;
- runs: `runs`, `lineage`, `compare`, `verify`;
- data: `ingest`, `quarantine`, `watch`;
- recommend: `recommend`, `serve-files`;
- orchestration: `monitor`, `serve`, `simulate`, `sweep`;
- models: the registry (`models list|show|promote|rollback|rebuild|history`);
- server: the project's Prefect server (`server start|status|stop`).

Commands load settings once (`common.load`), call the core or a flow (`runner.load_entrypoint`), and print;
what a command decides lives in the core.
"""

from ..processes import quick_exit
from .app import app
from .runner import load_entrypoint

quick_exit()  # a command's process exits without collecting its libraries' garbage

__all__ = ["app", "load_entrypoint"]
