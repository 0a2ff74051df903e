"""The application: the command groups put together, the global options, and the one error boundary.

A bad input (config file, setting, store, registry, run id, path) ends any command with one `error: ...`
line and exit 2 (`_Boundary`); `--verbose` adds the traceback. Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from typer.core import TyperGroup

from ..artifacts import StoreUnusable
from ..artifacts.runs import RunNotFound
from ..settings import PACKAGE, ConfigError, Settings
from . import benchmark, data, models, orchestration, pipeline, recommend, runs, server
from .common import COMMAND, console, err, fail


def _one_line(exc: Exception) -> str | None:
    """The one line a bad input ends in; None for anything else (a bug: its traceback is shown)."""
    from ..artifacts.registry import RegistryError  # sqlalchemy: imported only once something failed

    if isinstance(exc, ConfigError | StoreUnusable | RegistryError | RunNotFound):
        return str(exc)
    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return f"invalid settings: {problems}"
    # A path given (or configured) that cannot be used.
    unusable = FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError
    if isinstance(exc, unusable) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return None


class _Boundary(TyperGroup):
    """Every command runs inside `invoke`, so this is the one place a bad input becomes one line."""

    # The base class names typer's private, vendored click Context; typer.Context (public) is its subclass and
    # is what every command gets, so the narrower type is the true one here.
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # an exit chosen (`fail`), or a usage error typer reports itself
        except Exception as exc:
            line = _one_line(exc)
            if line is None:
                raise
            if ctx.params.get("verbose"):
                traceback.print_exception(exc)
            fail(line, code=2)


# Locals are never shown in a traceback: they may hold a password or a storage key.
app = typer.Typer(
    cls=_Boundary,
    help=f"{PACKAGE}: a reproducible recommender pipeline on Prefect.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
# Groups without a name put their commands at the top level (`run`, `runs`); named ones are subcommands.
for group in (pipeline.app, benchmark.app, runs.app, data.app, recommend.app, orchestration.app):
    app.add_typer(group)
app.add_typer(models.app, name="models")
app.add_typer(server.app, name="server")


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", envvar=f"{PACKAGE.upper()}_VERBOSE", help="On a bad input, also show the traceback."
        ),
    ] = False,
) -> None:
    ctx.call_on_close(_WarningLines.install())
    # Rich reads COLUMNS when a console is made (at import); a command run later in the same process (tests,
    # scripts) follows the COLUMNS it runs with.
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        console.width = err.width = int(columns)
    token = COMMAND.set(ctx)
    ctx.call_on_close(lambda: COMMAND.reset(token))


class _WarningLines(logging.Handler):
    """The package's warnings (such as a damaged manifest skipped) as `warning: ...` lines on stderr, and
    only there (not also through Prefect's handlers), each once, for one command."""

    @classmethod
    def install(cls) -> Callable[[], None]:
        """Install; returns what undoes it (tests run many commands in one process)."""
        package_log, handler = logging.getLogger(PACKAGE), cls(logging.WARNING)
        propagate, package_log.propagate = package_log.propagate, False
        package_log.addHandler(handler)

        def uninstall() -> None:
            package_log.removeHandler(handler)
            package_log.propagate = propagate

        return uninstall

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.shown: set[str] = set()  # `compare` reads the catalog twice, and would say it all twice

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.shown:
            self.shown.add(message)
            err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True, highlight=False)
