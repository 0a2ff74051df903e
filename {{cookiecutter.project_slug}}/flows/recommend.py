"""The batch-recommend flow: top-k for every user from the configured dataset's champion (or any of its
versions), served by the model refit on the whole snapshot, with titles where the dataset has a catalogue."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.ui import label_run, publish_link
from {{ cookiecutter.package_name }} import catalogue
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
    """Top-k for every user from the champion (or any version) of the configured dataset, as Parquet."""
    settings = settings_for_flow(config, config_files)
    dataset = settings.data.dataset_name()
    registry, store = open_registry(settings.registry, settings.storage), open_store(settings.storage)
    from {{ cookiecutter.package_name }} import serving  # torch: only when the flow runs

    held, model = serving.load_model(registry, store, version, dataset)
    label_run(f"batch-recommend top-{k} from {dataset} v{held.version}", settings.tags)
    frame = catalogue.with_titles(serving.recommend_all(model, k), catalogue.item_titles(settings.data))
    ref = store.put_frame(frame, kind="recommendations")
    served = "refit on the whole snapshot" if held.serving else "the evaluated model (no refit recorded)"
    get_run_logger().info(
        "dataset %s: champion v%d (%s): top-%d for %d users -> %s",
        dataset,
        held.version,
        served,
        k,
        model.n_users,
        ref.uri,
    )
    publish_link(store, "recommendations", ref.uri, f"top-{k} from {dataset} version {held.version}")
    return {
        "dataset": dataset,
        "version": held.version,
        "refit": held.serving is not None,
        "k": k,
        "users": model.n_users,
        "rows": frame.height,
        "titles": "title" in frame.columns,
        "ref": ref.model_dump(),
    }
