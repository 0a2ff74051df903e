"""The batch-recommend flow: top-k for every user from the champion (or any version), as Parquet."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.ui import label_run, publish_link
from {{ cookiecutter.package_name }} import serving
from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts.registry import CHAMPION, open_registry
from {{ cookiecutter.package_name }}.settings import settings_for_flow


@flow(name="batch-recommend", flow_run_name="batch-recommend top-{k} from {version}")
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
    label_run(f"batch-recommend top-{k} from v{held.version}", settings.tags)
    frame = serving.recommend_all(model, k)
    ref = store.put_frame(frame, kind="recommendations")
    get_run_logger().info("version %d: top-%d for %d users -> %s", held.version, k, model.n_users, ref.uri)
    publish_link(store, "recommendations", ref.uri, f"top-{k} from version {held.version}")
    return {
        "version": held.version,
        "k": k,
        "users": model.n_users,
        "rows": frame.height,
        "ref": ref.model_dump(),
    }
