"""The dashboard across runs: what it plots is what the manifests, statuses, registry and monitor recorded.

The flow test runs the real pipeline a few times (a first champion, a better one, a worse one, one refused by
validation), the monitor once, and a rollback; then it reads the page the last flow run left in the store:
the JSON block of plotted records and the SVG points' data attributes, against the manifests and the
registry. The unit tests build runs from stored manifests and a real SQLite registry.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from factories import pipeline_result

from {{ cookiecutter.package_name }}.artifacts import ArtifactStore, open_store
from {{ cookiecutter.package_name }}.artifacts.landing import advance_snapshot
from {{ cookiecutter.package_name }}.artifacts.registry import CHAMPION, Registry, open_registry
from {{ cookiecutter.package_name }}.artifacts.runs import list_runs, write_manifest
from {{ cookiecutter.package_name }}.cli import load_entrypoint
from {{ cookiecutter.package_name }}.dashboard import LOCATION, collect, collect_for
from {{ cookiecutter.package_name }}.dashboard_page import render_page, store_page
from {{ cookiecutter.package_name }}.settings import Settings

pipeline = load_entrypoint("flows/pipeline.py:pipeline")
monitor = load_entrypoint("flows/monitoring.py:monitor")
after_run = load_entrypoint("flows/dashboard.py:after_run")


class _Page(HTMLParser):
    """The page's plotted points (SVG circles' data attributes), table rows and JSON block."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.points: list[dict[str, str]] = []
        self.rows: list[str] = []
        self.links: list[str] = []
        self._in_data, self.data = False, ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "circle":
            self.points.append(found)
        elif tag == "tr" and "data-run" in found:
            self.rows.append(found["data-run"])
        elif tag == "a":
            self.links.append(found["href"])
        self._in_data = tag == "script" and found.get("id") == "dashboard-data"

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data += data

    def handle_endtag(self, tag: str) -> None:
        self._in_data = False

    def records(self) -> dict[str, Any]:
        return json.loads(self.data)


def _run(settings: Settings, **changes: Any) -> Any:
    resolved = settings.resolved()
    for section, values in changes.items():
        resolved[section] = {**resolved[section], **values}
    return pipeline(resolved, return_state=True)


@pytest.mark.usefixtures("prefect_server")
def test_the_page_plots_what_the_runs_and_the_registry_recorded(small_settings: Settings) -> None:
    assert _run(small_settings, model={"name": "popularity"}).is_completed()
    assert _run(small_settings, model={"name": "ease"}).is_completed()
    worse = _run(small_settings, model={"name": "ease", "ease": {"l2": 100_000.0}})
    assert worse.is_completed() and not worse.result()["promotion"]["promoted"]
    refused = _run(small_settings, validation={"rating_max": 1.0})  # fails before its record step
    assert refused.is_failed()
    store = open_store(small_settings.storage)
    registry = open_registry(small_settings.registry, small_settings.storage)
    registry.rollback(actor="on-call <ops>", reason="v2 recommends stale items & <b>old</b> ones")
    # The champion's snapshot becomes the current one: the monitor checks it and the dashboard is rebuilt.
    champion = registry.alias(CHAMPION, "synthetic")
    assert champion is not None
    advance_snapshot(store, {"snapshot": champion.artifact("snapshot")})
    assert monitor(small_settings.resolved(), return_state=True).is_completed()

    html = store.read_text(LOCATION)
    page = _Page(html)
    (view,) = page.records()["datasets"]
    manifests = {m.run_id: m for m in list_runs(store)}
    assert view["name"] == "synthetic" and len(manifests) == 3

    # The primary metric of every run, with its interval, as each manifest has it, drawn once per run.
    drawn = {p["data-key"]: p for p in page.points if p["data-series"].endswith(" run")}
    assert set(drawn) == set(manifests)
    for run in view["runs"]:
        manifest = manifests[run["run_id"]]
        assert run["metric"] == manifest.metrics["ndcg@10"]
        assert list(run["interval"]) == manifest.metric_intervals["ndcg@10"]
        assert float(drawn[run["run_id"]]["data-value"]) == manifest.metrics["ndcg@10"]
        assert float(drawn[run["run_id"]]["data-low"]) == manifest.metric_intervals["ndcg@10"][0]
        for step, cost in run["steps"].items():
            assert cost["seconds"] == manifest.tasks[step].seconds
            assert cost["peak_rss_mb"] == manifest.tasks[step].peak_rss_mb
            assert cost["cached"] == (manifest.tasks[step].state == "Cached")
    # Champions marked: the versions that ever held the alias (v1 and v2), not the worse v3.
    crowned = {registry.get(v).run_id for v in (1, 2)}
    assert {k for k, p in drawn.items() if p.get("data-marked")} == crowned

    # Every champion move with its reason, the rollback's escaped in the page and whole in the records.
    moves = [(m["action"], m["from_version"], m["to_version"], m["reason"]) for m in view["moves"]]
    history = registry.history(CHAMPION, "synthetic")
    assert moves == [(m.action, m.from_version, m.to_version, m.reason) for m in history]
    assert moves[-1][:3] == ("rollback", 2, 1)
    assert "v2 recommends stale items &amp; &lt;b&gt;old&lt;/b&gt; ones" in html and "<b>old</b>" not in html
    assert view["moves"][-1]["metrics"] == {
        k: v for k, v in registry.get(1).metrics.items() if k not in ("users", "users_skipped")
    }

    # The refused run left no manifest; it is counted (4 pipeline runs and 1 monitor run, 1 failed).
    assert view["outcomes"] == {"completed": 3, "failed": 1}
    (failed,) = view["failed"]
    assert (
        failed["run_id"] == str(refused.state_details.flow_run_id) and "ValidationFailed" in failed["reason"]
    )
    assert re.search(r'data-failure-share="0\.2"', html)

    # The monitor's drift scores per feature, with their thresholds, as the check recorded them.
    (check,) = view["checks"]
    latest = json.loads(store.read_text("monitor/latest.json"))
    recorded = {c["column"]: c for c in latest["event_columns"] + latest["prediction_columns"]}
    assert {k: v[:2] for k, v in check["scores"].items()} == {
        k: [c["score"], c["threshold"]] for k, c in recorded.items()
    }
    # The table links to each run's report and manifest, relative to the page, and they are in the store.
    assert sorted(page.rows) == sorted(manifests)
    for href in page.links:
        assert href.startswith("../runs/") and store.exists(href.removeprefix("../"))


@pytest.mark.usefixtures("prefect_server")
def test_a_failed_monitor_run_is_counted_and_a_failing_rebuild_never_fails_a_run(
    small_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect import flow

    @flow(name="monitor", on_completion=[after_run], on_failure=[after_run])
    def broken(config: dict[str, Any]) -> None:
        raise RuntimeError("the champion's model is gone")

    assert broken(small_settings.resolved(), return_state=True).is_failed()
    (view,) = _Page(open_store(small_settings.storage).read_text(LOCATION)).records()["datasets"]
    (check,) = view["checks"]
    assert check["failed"] == "RuntimeError: the champion's model is gone" and check["scores"] == {}

    # A registry that cannot be reached: the page is not rebuilt, the run completes all the same.
    unreachable = small_settings.resolved()
    unreachable["registry"] = {**unreachable["registry"], "url": "postgresql+psycopg://127.0.0.1:9/none"}

    @flow(name="monitor", on_completion=[after_run], on_failure=[after_run])
    def fine(config: dict[str, Any]) -> int:
        return 1

    assert fine(unreachable, return_state=True).is_completed()
    assert "dashboard not rebuilt" in caplog.text


@pytest.mark.unit
def test_an_empty_store_gives_a_page_that_says_so(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    page = _Page(render_page(collect(store, [], [], "ndcg@10"), str))
    assert page.records()["datasets"] == [] and page.points == []
    assert "No runs yet" in render_page(collect(store, [], [], "ndcg@10"), str)


@pytest.mark.unit
def test_several_datasets_each_get_their_runs_and_the_page_is_the_same_for_the_same_records(
    tmp_path: Path,
) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    registry = Registry(f"sqlite:///{tmp_path / 'registry.sqlite'}", store)
    for run, dataset, ndcg in (("a1", "ml-100k", 0.3), ("b1", "synthetic", 0.2), ("a2", "ml-100k", 0.35)):
        result = pipeline_result(run, ndcg=ndcg, dataset=dataset)
        write_manifest(store, result)
        registry.promote(registry.register(result, actor="test").version, actor="t", reason=f"{run} better")
    registry.rollback(actor="t", reason="</script><script>alert(1)</script>", dataset="ml-100k")

    board = collect(store, registry.versions(), registry.history(CHAMPION), "ndcg@10")
    html = render_page(board, str)
    records = _Page(html).records()
    assert [(d["name"], [r["run_id"] for r in d["runs"]]) for d in records["datasets"]] == [
        ("ml-100k", ["a1", "a2"]),
        ("synthetic", ["b1"]),
    ]
    assert [r["metric"] for r in records["datasets"][0]["runs"]] == [0.3, 0.35]
    assert records["datasets"][0]["moves"][-1]["reason"] == "</script><script>alert(1)</script>"
    assert "<script>alert" not in html  # escaped in the list and in the JSON block
    assert html == render_page(
        collect(store, registry.versions(), registry.history(CHAMPION), "ndcg@10"), str
    )


@pytest.mark.unit
def test_the_command_line_writes_the_page_into_the_store_or_elsewhere(
    small_settings: Settings, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from {{ cookiecutter.package_name }}.cli import app

    store = open_store(small_settings.storage)
    write_manifest(store, pipeline_result("r1"))
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"storage": {"uri": small_settings.storage.uri}}))
    result = CliRunner().invoke(app, ["dashboard", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert store.exists(LOCATION) and "r1" in store.read_text(LOCATION)
    out = tmp_path / "board.html"
    result = CliRunner().invoke(app, ["dashboard", "-c", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert _Page(out.read_text()).records() == _Page(store.read_text(LOCATION)).records()
    board, _ = collect_for(small_settings)
    assert store_page(store, board) == store.uri_of(LOCATION)
