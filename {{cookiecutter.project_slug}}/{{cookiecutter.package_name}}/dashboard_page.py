"""The dashboard as one self-contained HTML page: per dataset, the panels drawn from `dashboard.collect`'s
records as inline SVG (dashboard_svg.py), and those records as a JSON block (`#dashboard-data`) so what is
plotted can be read back and checked. No script runs, nothing is fetched: the page opens from a file.

Text that comes from users (reasons, actors, model and dataset names, run ids) is escaped; links to a run's
report and manifest are made by `link` from their paths inside the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from html import escape
from urllib.parse import quote

from .artifacts import ArtifactStore
from .dashboard import LOCATION, ChampionMove, Dashboard, DatasetView, RunPoint
from .dashboard_svg import PALETTE, Annotation, Chart, Point, Series, Threshold, render

# The champion's other metrics: ranking quality, then what the catalogue gets (coverage: share of items ever
# recommended; novelty: mean self-information of what is recommended, higher is less popular).
CHAMPION_METRICS = ("recall", "map", "mrr", "hitrate", "coverage", "novelty")
LAST_RUNS = 25
_ACTION_COLORS = {"promote": "#2ca02c", "rollback": "#d62728"}
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1600px}
h1{font-size:1.5em}h2{border-bottom:2px solid #ccc;margin-top:2em}h3{font-size:1.05em;margin:1.2em 0 .3em}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid>div{flex:0 1 760px}
svg.chart{max-width:100%;height:auto;background:#fff;border:1px solid #ddd}
.title{font-size:14px;font-weight:600}.tick{font-size:10px;fill:#555}.axis{font-size:11px;fill:#333}
.note{font-size:11px;font-weight:700}.legend{font-size:12px;margin:.2em 0 .8em}
.key{margin-right:1em;white-space:nowrap}.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
.failed{color:#b00}.empty{color:#777;font-style:italic}ol.notes{font-size:13px}code{font-size:12px}
"""


def store_page(store: ArtifactStore, dashboard: Dashboard) -> str:
    """Write the page at its stable place in the store (`LOCATION`); returns its URI."""
    return store.write_text(LOCATION, render_page(dashboard, beside_page))


def beside_page(relative: str) -> str:
    """A link from the page at `LOCATION` to another file of its store: relative, so it opens however the
    store is reached (`serve-files`, a file path, a copied folder)."""
    return "../" * LOCATION.count("/") + quote(relative)


def render_page(dashboard: Dashboard, link: Callable[[str], str]) -> str:
    """The whole page; `link` turns a path inside the store into an href."""
    runs = sum(len(d.runs) for d in dashboard.datasets)
    stamps = [r.finished_at for d in dashboard.datasets for r in d.runs] + [
        c.at for d in dashboard.datasets for c in d.checks
    ]
    newest = f", newest record {escape(max(stamps))}" if stamps else ""
    body = [
        "<h1>Runs across time</h1>",
        f"<p>{runs} pipeline run(s) on {len(dashboard.datasets)} dataset(s){newest}. Built from the run "
        "manifests, their statuses, the registry and the monitor's checks; hover a point for its run.</p>",
        _ingest(dashboard),
    ]
    if not dashboard.datasets:
        body.append('<p class="empty">No runs yet: run the pipeline, then rebuild this page.</p>')
    body += [_dataset(view, link) for view in dashboard.datasets]
    data = json.dumps(asdict(dashboard), sort_keys=True, separators=(",", ":"), default=list)
    # Inside <script>, `</script>` in a reason would end the block: the three HTML characters are escaped.
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            "<title>Recommender dashboard</title>",
            f"<style>{_STYLE}</style></head><body>",
            *body,
            f'<script type="application/json" id="dashboard-data">{data}</script>',
            "</body></html>",
            "",
        ]
    )


def _ingest(dashboard: Dashboard) -> str:
    share = dashboard.quarantine_share
    if share is None:
        return "<p>Ingest: no batches taken in or quarantined yet.</p>"
    refused = "".join(
        f"<li>{escape(str(q.get('quarantined_at', '')))} <code>{escape(str(q.get('file', '')))}</code>: "
        f"{escape('; '.join(map(str, q.get('reasons', []))))}</li>"
        for q in dashboard.quarantined[-10:]
    )
    counts = (
        f"<p>Ingest: {dashboard.batches_taken_in} batch(es) taken in, "
        f"{len(dashboard.quarantined)} quarantined ({share:.0%} of batches).</p>"
    )
    return counts + (f'<ul class="notes">{refused}</ul>' if refused else "")


def _dataset(view: DatasetView, link: Callable[[str], str]) -> str:
    name = escape(view.name)
    k = view.primary_metric.partition("@")[2]
    parts = [f'<section data-dataset="{name}"><h2>Dataset {name}</h2>', "<h3>Primary metric</h3>"]
    parts.append(render(_primary_chart(view)) + _move_notes(view.moves))
    parts.append(f"<h3>The champion's other metrics (@{escape(k)}), after each change of champion</h3>")
    parts.append('<div class="grid">' + "".join(f"<div>{c}</div>" for c in _champion_charts(view)) + "</div>")
    parts.append("<h3>Cost and reliability</h3>")
    parts.append(_reliability(view))
    parts.append('<div class="grid">' + "".join(f"<div>{c}</div>" for c in _cost_charts(view)) + "</div>")
    parts.append("<h3>Drift per feature (monitor)</h3>")
    parts.append('<div class="grid">' + "".join(f"<div>{c}</div>" for c in _drift_charts(view)) + "</div>")
    parts.append(f"<h3>Last {min(LAST_RUNS, len(view.runs))} run(s)</h3>")
    parts.append(_table(view, link))
    return "\n".join(parts) + "</section>"


def _primary_chart(view: DatasetView) -> Chart:
    models = sorted({r.model for r in view.runs})
    series = [
        Series(
            f"{model} run",
            [
                Point(r.finished_at, r.metric, r.run_id, *_bounds(r.interval), marked=r.champion)
                for r in view.runs
                if r.model == model and r.metric is not None
            ],
            PALETTE[i % len(PALETTE)],
            line=False,
        )
        for i, model in enumerate(models)
    ]
    notes = [Annotation(m.at, i, _ACTION_COLORS.get(m.action, "#444")) for i, m in enumerate(view.moves, 1)]
    return Chart(
        f"{view.primary_metric} of every run on {view.name} (bar: 95% interval, ring: became champion)",
        view.primary_metric,
        series,
        annotations=notes,
    )


def _move_notes(moves: list[ChampionMove]) -> str:
    if not moves:
        return '<p class="empty">No champion yet.</p>'
    items = "".join(
        f'<li data-action="{escape(m.action)}">{escape(m.at)}: <b>{escape(m.action)}</b> '
        f"{_version(m.from_version)} &rarr; {_version(m.to_version)} by {escape(m.actor)}: "
        f"{escape(m.reason)}</li>"
        for m in moves
    )
    return f'<ol class="notes">{items}</ol>'


def _version(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def _champion_charts(view: DatasetView) -> list[str]:
    k = view.primary_metric.partition("@")[2]
    held = [m for m in view.moves if m.to_version is not None]
    charts = []
    for metric in (f"{name}@{k}" for name in CHAMPION_METRICS):
        points = [Point(m.at, m.metrics[metric], f"v{m.to_version}") for m in held if metric in m.metrics]
        if points:
            unit = " (bits)" if metric.startswith("novelty") else " (share)" if "coverage" in metric else ""
            charts.append(
                render(
                    Chart(f"Champion {metric} on {view.name}", f"{metric}{unit}", [Series(metric, points)])
                )
            )
    return charts or ['<p class="empty">No champion yet.</p>']


def _cost_charts(view: DatasetView) -> list[str]:
    steps = sorted({s for r in view.runs for s in r.steps}, key=_step_order(view.runs))

    def per_step(measure: Callable[[RunPoint, str], float | None]) -> list[Series]:
        return [
            Series(
                step,
                [Point(r.started_at, v, r.run_id) for r in view.runs if (v := measure(r, step)) is not None],
                PALETTE[i % len(PALETTE)],
            )
            for i, step in enumerate(steps)
        ]

    def seconds(r: RunPoint, step: str) -> float | None:
        return r.steps[step].seconds if step in r.steps else None

    def memory(r: RunPoint, step: str) -> float | None:
        return r.steps[step].peak_rss_mb if step in r.steps else None

    cached = [Point(r.started_at, sum(s.cached for s in r.steps.values()), r.run_id) for r in view.runs]
    return [
        render(Chart(f"Wall time per step on {view.name}", "seconds", per_step(seconds))),
        render(Chart(f"Peak resident memory per step on {view.name}", "MB", per_step(memory))),
        render(Chart(f"Cached steps per run on {view.name}", "steps cached", [Series("cache hits", cached)])),
    ]


def _step_order(runs: list[RunPoint]) -> Callable[[str], tuple[int, str]]:
    """Steps in the order the newest run ran them (then by name)."""
    order = list(runs[-1].steps) if runs else []
    return lambda step: (order.index(step) if step in order else len(order), step)


def _reliability(view: DatasetView) -> str:
    share = view.failure_share
    counts = ", ".join(f"{n} {escape(state)}" for state, n in view.outcomes.items()) or "none"
    monitor_failed = sum(c.failed is not None for c in view.checks)
    text = (
        f"<p>Pipeline runs: {counts}. Monitor runs: {len(view.checks)} ({monitor_failed} failed). "
        f'Failed or stopped: <b data-failure-share="{share if share is not None else ""}">'
        f"{'n/a' if share is None else f'{share:.0%}'}</b> of flow runs.</p>"
    )
    rows = "".join(
        f'<li class="failed">{escape(f.at)} run <code>{escape(f.run_id[:8])}</code> {escape(f.status)} at '
        f"{escape(f.step or 'start')}: {escape(f.reason)}</li>"
        for f in view.failed[-10:]
    )
    return text + (f'<ul class="notes">{rows}</ul>' if rows else "")


def _drift_charts(view: DatasetView) -> list[str]:
    features = sorted({f for c in view.checks for f in c.scores})
    charts = []
    for feature in features:
        scored = [(c, c.scores[feature]) for c in view.checks if feature in c.scores]
        counted = scored[-1][1][2]
        points = [
            Point(c.at, score, f"champion v{c.champion}", marked=score > limit)
            for c, (score, limit, _) in scored
        ]
        limits = sorted({limit for _, (_, limit, _) in scored})
        title = f"Drift of {feature} on {view.name}{'' if counted else ' (context, not counted)'}"
        charts.append(
            render(
                Chart(
                    title,
                    "drift score (distance)",
                    [Series(feature, points, PALETTE[1])],
                    thresholds=[Threshold("threshold", limit) for limit in limits],
                )
            )
        )
    return charts or ['<p class="empty">No monitor check recorded yet.</p>']


def _table(view: DatasetView, link: Callable[[str], str]) -> str:
    head = (
        "".join(
            f"<th>{c}</th>"
            for c in ("run", "finished (UTC)", "status", "user", "config", "dataset id", "model")
        )
        + f"<th>{escape(view.primary_metric)}</th><th>version</th><th>files</th>"
    )
    rows = []
    for r in reversed(view.runs[-LAST_RUNS:]):
        metric = "" if r.metric is None else f"{r.metric:.4f}"
        css = ' class="failed"' if r.status != "completed" else ""
        version = "" if r.version is None else f"v{r.version}{' (champion)' if r.champion else ''}"
        rows.append(
            f'<tr data-run="{escape(r.run_id)}"><td><code>{escape(r.run_id[:8])}</code></td>'
            f"<td>{escape(r.finished_at[:19].replace('T', ' '))}</td><td{css}>{escape(r.status)}</td>"
            f"<td>{escape(r.user)}</td><td><code>{escape(r.config_fingerprint[:12])}</code></td>"
            f"<td><code>{escape(r.dataset_id[:12])}</code></td><td>{escape(r.model)}</td><td>{metric}</td>"
            f'<td>{version}</td><td><a href="{escape(link(r.report))}">report</a> '
            f'<a href="{escape(link(r.manifest))}">manifest</a></td></tr>'
        )
    if not rows:
        return '<p class="empty">No runs.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _bounds(interval: tuple[float, float] | list[float] | None) -> tuple[float | None, float | None]:
    """A run's 95% interval as (low, high); (None, None) for a run without one."""
    if not interval:
        return None, None
    return float(interval[0]), float(interval[1])
