"""Commands that serve: `recommend` (a few users, or all of them to Parquet) and `serve-files` (the store's
links for the Prefect UI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.markup import escape
from rich.table import Table

from ..artifacts import ArtifactRef, open_store
from .common import (
    ConfigOption,
    JsonOption,
    PathOption,
    SetOption,
    SourceOption,
    console,
    fail,
    link,
    load,
    print_json,
    registry_of,
    state_message,
)
from .runner import load_entrypoint

app = typer.Typer()


@app.command()
def recommend(
    user: Annotated[list[int] | None, typer.Option("--user", help="A user id (repeatable).")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many items per user.")] = 10,
    all_users: Annotated[
        bool, typer.Option("--all", help="Every user, by the batch flow, to Parquet.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="With --all: also copy the Parquet file here.")] = None,
    version: Annotated[str, typer.Option(help="Registry version or alias to serve from.")] = "champion",
    source: SourceOption = None,
    path: PathOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Top-k unseen items from the configured dataset's champion, with titles where the dataset has a
    catalogue; a user the model does not know gets the snapshot's most popular items. Reads only the
    registry, the artifact store and the catalogue. The dataset is the one --source/--path, --config and
    --set data.* describe, as for `run`."""
    settings = load(config, set_, source=source, path=path)
    dataset = settings.data.dataset_name()
    if all_users:
        batch_recommend = load_entrypoint("flows/recommend.py:batch_recommend")
        state = batch_recommend(settings.resolved(), k=k, version=version, return_state=True)
        if not state.is_completed():
            fail(f"batch-recommend {state.name}: {state_message(state)}", code=1)
        result, store = state.result(), open_store(settings.storage)
        where = link(store, result["ref"]["uri"])
        console.print(
            f"dataset {dataset}: version {result['version']}: top-{k} for {result['users']:,} users "
            f"-> {where}",
            soft_wrap=True,
            highlight=False,
        )
        if out is not None:
            out.write_bytes(store.get_bytes(ArtifactRef(**result["ref"])))
            console.print(f"copied to {out}")
        return
    if not user:
        fail("give --user ID (repeatable) or --all", code=2)
    too_large = [u for u in user if not -(2**63) <= u < 2**63]
    if too_large:  # user ids are 64-bit integers everywhere (the data contract); polars would overflow
        fail(f"--user {too_large[0]}: not a user id (ids are 64-bit integers)", code=2)
    from .. import catalogue, serving

    registry, store = registry_of(settings), open_store(settings.storage)
    held = serving.served_version(registry, version, dataset)
    # A lookup in the refit's stored top table where it answers; loading the model imports torch (about a
    # second and a half of the command's start) and ranks the same items.
    recs, unknown = serving.stored_recommendations(store, held, user, k), list[int]()
    if recs is None:
        _, model = serving.load_model(registry, store, held.version, dataset)
        recs, unknown = serving.recommend_users(model, user, k)
    recs = catalogue.with_titles(recs, catalogue.item_titles(settings.data))
    if as_json:
        print_json(
            {
                "dataset": dataset,
                "version": held.version,
                "aliases": list(held.aliases),
                "refit": bool(held.serving),
                "unknown_users": unknown,
                "recommendations": recs.to_dicts(),
            }
        )
        return
    role = ", ".join(held.aliases) or "version"
    served = "refit on the whole snapshot" if held.serving else "trained on its train split"
    # Said above the table, not as its title: a title wraps to the table's width.
    header = f"dataset {dataset}: {role} v{held.version} ({held.model_name}, {served}), top-{k}"
    console.print(header, soft_wrap=True, highlight=False)
    table = Table()
    columns = ["user", "rank", "item", *(["title"] if "title" in recs.columns else []), "score"]
    for column in columns:
        table.add_column(column, justify="left" if column == "title" else "right")
    for row in recs.iter_rows(named=True):
        cells = [str(row["user_id"]), str(row["rank"]), str(row["item_id"])]
        if "title" in recs.columns:
            cells.append(escape(row["title"] or ""))
        table.add_row(*cells, f"{row['score']:.4f}")
    console.print(table)
    if unknown:
        data = "the snapshot" if held.serving else "its training data"
        console.print(
            f"note: {', '.join(map(str, unknown))} unknown to version {held.version} (no events in {data}): "
            f"showing the {k} items most users of {data} have instead",
            soft_wrap=True,
            highlight=False,
        )
    if not held.serving:
        console.print(
            f"note: version {held.version} has no serving refit and may recommend items a user has in its "
            f"held-out events; `models promote {held.version}` refits it",
            soft_wrap=True,
            highlight=False,
        )


@app.command("serve-files")
def serve_files(
    port: Annotated[int | None, typer.Option(help="Port [the one in storage.public_url]")] = None,
    host: Annotated[str, typer.Option(help="Interface (loopback: this machine only).")] = "127.0.0.1",
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Serve the local artifact store read-only over HTTP, so the links in the Prefect UI open.

    Start it next to `prefect server start`; links point at storage.public_url. Runs until interrupted.
    """
    from ..artifacts.files import file_server

    settings = load(config, set_)
    store = open_store(settings.storage)
    if not store.uri_of("").startswith("file://"):
        fail("the artifact store is on S3: its links are presigned, there is nothing to serve", code=2)
    public = urlsplit(settings.storage.public_url or "")
    try:
        server = file_server(Path(store.root), host, port or public.port or 4201)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port or public.port or 4201}: {exc}", code=2)
    address = server.server_address[0]  # typed str or bytes (an AF_UNIX path); here an IP address
    bound_host = address.decode() if isinstance(address, bytes) else address
    bound = f"http://{bound_host}:{server.server_port}"
    console.print(f"serving {store.root} read-only on {bound} (links: {settings.storage.public_url})")
    if settings.storage.public_url is None:
        console.print("[yellow]storage.public_url is null: links in the UI stay file:// until it is set[/]")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
