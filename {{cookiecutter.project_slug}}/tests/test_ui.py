"""What the Prefect UI shows: links that open (the store served over HTTP, presigned on S3), the metrics with
their intervals, run names and tags, and a quarantined ingest that ends Failed without a traceback."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import polars as pl
import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.artifacts import ArtifactStore, open_store
from {{ cookiecutter.package_name }}.artifacts.files import file_server
from {{ cookiecutter.package_name }}.cli import load_entrypoint
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.settings import StorageConfig, SyntheticConfig, load_settings

pytestmark = pytest.mark.unit

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT = PROJECT_ROOT / "configs" / "default.yaml"
LINK = re.compile(r"\]\((https?://[^)]+)\)")


@contextmanager
def _serving(root: Path) -> Iterator[str]:
    """`serve-files` in a thread, on a free loopback port; yields its base URL."""
    server = file_server(root, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _raw(base: str, method: str, path: str) -> tuple[int, bytes]:
    """A request with the path sent as written (urllib would normalise `..` away)."""
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _stored_bytes(store: ArtifactStore, url: str, base: str) -> bytes:
    return (Path(store.root) / urllib.request.unquote(url.removeprefix(base + "/"))).read_bytes()


# -- the file server and the links (no Prefect) --------------------------------------------------------------


def test_served_links_return_the_stored_bytes_with_their_content_types(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with _serving(root) as base:
        store = ArtifactStore(str(root), public_url=base)
        docs = tmp_path / "docs"
        (docs / "validations").mkdir(parents=True)
        (docs / "index.html").write_text("<html>data docs</html>")
        (docs / "validations" / "run.html").write_text("<html>one validation</html>")
        uris = {
            "text/html; charset=utf-8": store.put_bytes(b"<html>drift</html>", "report", ".html").uri,
            "application/json": store.put_json({"ndcg@10": 0.3}, "metrics").uri,
            "application/vnd.apache.parquet": store.put_frame(pl.DataFrame({"a": [1, 2]}), "recs").uri,
            "application/octet-stream": store.put_bytes(b"\x00weights", "model", ".safetensors").uri,
            "text/markdown; charset=utf-8": store.write_text("runs/r1/report.md", "# Run r1"),
        }
        docs_uri = store.write_tree("ingests/abc/data-docs", docs)
        for expected_type, uri in uris.items():
            link = store.link(uri)
            assert link.startswith(f"{base}/"), link
            status, content_type, body = _get(link)
            assert (status, content_type) == (200, expected_type), link
            assert body == _stored_bytes(store, link, base)
        # A folder with an index opens as that page, and the page's relative links resolve inside it.
        status, content_type, body = _get(store.link(docs_uri))
        assert (status, body) == (200, b"<html>data docs</html>")
        assert _get(store.link(docs_uri) + "/validations/run.html")[2] == b"<html>one validation</html>"


def test_file_server_stays_inside_the_store(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / "runs").mkdir(parents=True)
    (root / "runs" / "report.md").write_text("inside")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "runs" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with _serving(root) as base:
        assert _raw(base, "GET", "/runs/report.md") == (200, b"inside")
        for escape in (
            "/../secret.txt",
            "/runs/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/runs/%2E%2E/%2e%2e/secret.txt",
            "/..%2fsecret.txt",
            "/runs/leak.txt",  # a symlink out of the store
        ):
            status, body = _raw(base, "GET", escape)
            assert status in (403, 404) and b"outside" not in body, escape
        assert _raw(base, "GET", "/")[0] == 404  # no listings
        assert _raw(base, "GET", "/runs/")[0] == 404
        assert _raw(base, "PUT", "/runs/report.md")[0] == 501  # read-only
        assert _raw(base, "DELETE", "/runs/report.md")[0] == 501
    assert (root / "runs" / "report.md").read_text() == "inside"


def test_links_without_a_server_outside_the_store_and_on_s3(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"), public_url=None)
    uri = store.write_text("runs/r1/report.md", "# r1")
    assert store.link(uri) == uri and uri.startswith("file://")  # no server configured: the file itself
    served = ArtifactStore(str(tmp_path / "store"), public_url="http://127.0.0.1:4201/")
    assert served.link(uri) == "http://127.0.0.1:4201/runs/r1/report.md"
    assert served.link("runs/r1/report.md") == "http://127.0.0.1:4201/runs/r1/report.md"
    with pytest.raises(ValueError):
        served.link((tmp_path / "elsewhere.md").as_uri())
    with pytest.raises(ValueError):
        served.link("../elsewhere.md")

    # S3: a presigned GET (made offline, from the credentials), answered as the file's type.
    s3 = open_store(
        StorageConfig(
            uri="s3://bucket/pipeline",
            endpoint_url="http://127.0.0.1:9",
            access_key_id="key",
            secret_access_key="secret",
            link_expiry_seconds=600,
        )
    )
    link = s3.link("s3://bucket/pipeline/objects/ab/abc.html")
    assert link.startswith("http://127.0.0.1:9/bucket/pipeline/objects/ab/abc.html?"), link
    query = parse_qs(urlsplit(link).query)
    assert query["response-content-type"] == ["text/html; charset=utf-8"]
    if "X-Amz-Expires" in query:  # SigV4: a lifetime
        assert query["X-Amz-Expires"] == ["600"] and "X-Amz-Signature" in query
    else:  # SigV2 (botocore's choice for some endpoints): an end time
        assert abs(int(query["Expires"][0]) - time.time() - 600) < 60 and "Signature" in query
    with pytest.raises(ValidationError):
        StorageConfig(link_expiry_seconds=8 * 86_400)  # presigned URLs cannot outlive 7 days


# -- flows on a real Prefect server --------------------------------------------------------------------------


def _artifacts(flow_run_id: UUID) -> dict[str, str]:
    """The flow run's artifacts (key -> data), those made by the flow itself included.

    Not `read_artifacts`: Prefect 3.8's sync client sends unset filters as null, which its server refuses,
    and an empty task-run filter leaves out the artifacts that no task made.
    """
    import httpx
    from prefect.settings import PREFECT_API_URL

    body = {"artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}}, "sort": "KEY_ASC", "limit": 50}
    response = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json={**body, "offset": 0})
    response.raise_for_status()
    return {a["key"]: a["data"] for a in response.json()}


@pytest.mark.usefixtures("prefect_server")
def test_retrain_names_and_tags_its_runs_and_its_links_open(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    retrain = load_entrypoint("flows/retrain.py:retrain")
    prefix = load_entrypoint("flows/ui.py:ARTIFACT_PREFIX")
    root = tmp_path / "store"
    with _serving(root) as base:
        settings = load_settings(
            [DEFAULT],
            {
                "data": {"synthetic": {"n_users": 300, "n_items": 200, "n_interactions": 6_000}},
                "storage": {"uri": str(root), "public_url": base},
                "promotion": {"enabled": False},
                "tags": {"team": "recs"},
            },
        )
        state = retrain(settings.resolved(), reason="schedule", return_state=True)
        assert state.is_completed(), state.message
        summary = state.result()
        store = open_store(settings.storage)
        with get_client(sync_client=True) as client:
            outer = client.read_flow_run(state.state_details.flow_run_id)
            inner = client.read_flow_run(UUID(summary["run_id"]))

        published = _artifacts(inner.id)
        assert outer.name == "retrain (schedule)"
        assert {"trigger=schedule", "team=recs"} <= set(outer.tags)
        assert {"trigger=schedule", "team=recs"} <= set(inner.tags)
        dataset, config = summary["dataset"]["id"][:12], summary["config_fingerprint"][:8]
        name = f"pipeline {summary['model']} on {dataset} cfg {config}"  # the bake's default model
        assert inner.name == name and summary["flow_run_name"] == name  # the manifest has the final name
        assert summary["tags"] == {"team": "recs", "trigger": "schedule"}

        for key in ("manifest-file", "report-file", "lineage-file", "model-file"):
            (link,) = LINK.findall(published[f"{prefix}-{key}"])
            assert link.startswith(f"{base}/"), key
            status, _, body = _get(link)
            assert status == 200 and body == _stored_bytes(store, link, base), key
        rows = {row["metric"]: row for row in json.loads(published[f"{prefix}-metrics"])}
        for metric, (low, high) in summary["metric_intervals"].items():
            assert (rows[metric]["low"], rows[metric]["high"]) == (round(low, 6), round(high, 6))
            assert rows[metric]["low"] <= rows[metric]["value"] <= rows[metric]["high"]


@pytest.mark.usefixtures("prefect_server")
def test_quarantined_ingest_on_a_worker_fails_with_one_message_and_no_traceback(tmp_path: Path) -> None:
    """The run as a worker executes it (`python -m prefect.engine <id>`), where a Failed final state is
    re-raised and logged by the engine."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.settings import PREFECT_API_URL

    ingest = load_entrypoint("flows/ingestion.py:ingest")
    prefix = load_entrypoint("flows/ui.py:ARTIFACT_PREFIX")
    landing, root = tmp_path / "landing", tmp_path / "store"
    landing.mkdir()
    events = generate(SyntheticConfig(n_users=100, n_items=80, n_interactions=800), seed=3)
    events.with_columns(rating=42.0).write_csv(landing / "bad.csv")
    with _serving(root) as base:
        settings = load_settings(
            [DEFAULT],
            {
                "ingest": {"landing": str(landing), "quarantine": str(tmp_path / "q"), "settle_seconds": 0},
                "storage": {"uri": str(root), "public_url": base},
            },
        )
        with get_client(sync_client=True) as client:
            run = client.create_flow_run(ingest, parameters={"config": settings.resolved()})
        env = {
            **os.environ,
            "PREFECT_API_URL": PREFECT_API_URL.value(),
            "PREFECT__FLOW_ENTRYPOINT": "flows/ingestion.py:ingest",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        }
        engine = subprocess.run(
            [sys.executable, "-m", "prefect.engine", str(run.id)],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        with get_client(sync_client=True) as client:
            finished = client.read_flow_run(run.id)
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])),
                limit=200,
                offset=0,
                sort=LogSort.TIMESTAMP_ASC,
            )
        published = _artifacts(run.id)

        text = "\n".join(log.message for log in logs)
        # The run's logs and the engine's output in the message: a failure for another reason names it.
        why = (finished.state.message, text, engine.stderr[-6000:])
        assert finished.state.is_failed(), why
        assert finished.state.message.startswith("1 batch(es) refused and quarantined: bad.csv: "), why
        assert "\n" not in finished.state.message
        assert finished.name == "ingest landing zone"
        assert "refused, quarantined" in text, text
        for noise in ("Traceback", "TypeError", "unexpected exception"):
            assert noise not in text and noise not in engine.stderr, (noise, text, engine.stderr)

        # The batch's GX Data Docs, linked from the ingest report and as a link artifact, open over HTTP.
        (docs_link,) = LINK.findall(published[f"{prefix}-ingest-data-docs"])
        assert docs_link in published[f"{prefix}-ingest"]
        status, content_type, body = _get(docs_link)
        assert status == 200 and content_type.startswith("text/html") and b"<html" in body.lower()
