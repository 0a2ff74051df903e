"""What the flows show in the Prefect UI: artifact keys (shared by every flow, so each key's page holds the
history across runs), links that open from it, and flow-run names and tags that say what ran."""

from __future__ import annotations

from collections.abc import Mapping

from prefect.artifacts import create_link_artifact
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from {{ cookiecutter.package_name }}.artifacts import ArtifactStore
from {{ cookiecutter.package_name }}.settings import PACKAGE

# Artifact keys may hold only lowercase letters, digits and dashes.
ARTIFACT_PREFIX = PACKAGE.replace("_", "-")


def publish_link(store: ArtifactStore, key: str, uri: str, text: str, description: str | None = None) -> str:
    """A link artifact `<prefix>-<key>` to a stored file, as a URL a browser opens (see `ArtifactStore.link`);
    returns that URL."""
    url = store.link(uri)
    create_link_artifact(key=f"{ARTIFACT_PREFIX}-{key}", link=url, link_text=text, description=description)
    return url


def prefect_tags(tags: Mapping[str, str]) -> list[str]:
    """`key=value` labels (`--tag`, the trigger of a run) as Prefect tags."""
    return [f"{key}={value}" for key, value in sorted(tags.items())]


def label_run(name: str | None = None, tags: Mapping[str, str] | None = None) -> None:
    """Rename the current flow run and add `key=value` tags to it (nothing outside a flow run).

    Done from inside the flow, so it holds however the run was started (CLI, `serve`, a worker, a parent
    flow), and once what ran is known (the dataset id comes out of the first task).
    """
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    run = ctx.flow_run
    name = name or run.name
    labels = sorted({*run.tags, *prefect_tags(tags or {})})
    if name == run.name and labels == sorted(run.tags):  # a round trip to the server saved
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(run.id, name=name, tags=labels)
    # The run's own copy, read by `prefect.runtime.flow_run` (the manifest records the name from there).
    run.name, run.tags = name, labels
