"""The batch-recommend flow: top-k for every user from the champion (or any version), as Parquet."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact

from flows.ui import ARTIFACT_PREFIX
from {{ cookiecutter.package_name }} import serving
from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts.registry import CHAMPION, open_registry
from {{ cookiecutter.package_name }}.settings import settings_for_flow


@flow(name="batch-recommend")
def batch_recommend(
    config: dict[str, Any] | None = None,
    config_files: list[str] | None = None,
    k: int = 10,
    version: str = CHAMPION,
) -> dict[str, Any]:
    """Top-k for every user from the champion (or any version), stored as a Parquet artifact."""
    settings = settings_for_flow(config, config_files)
    registry, store = open_registry(settings.registry, settings.storage), open_store(settings.storage)
    held, model = serving.load_model(registry, store, version)
    frame = serving.recommend_all(model, k)
    ref = store.put_frame(frame, kind="recommendations")
    get_run_logger().info("version %d: top-%d for %d users -> %s", held.version, k, model.n_users, ref.uri)
    create_link_artifact(
        key=f"{ARTIFACT_PREFIX}-recommendations",
        link=ref.uri,
        link_text=f"top-{k} from version {held.version}",
    )
    return {
        "version": held.version,
        "k": k,
        "users": model.n_users,
        "rows": frame.height,
        "ref": ref.model_dump(),
    }
