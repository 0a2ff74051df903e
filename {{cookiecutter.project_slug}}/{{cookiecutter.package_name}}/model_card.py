"""The model card of a registered, judged version: one Markdown page a reviewer or auditor reads.

Pure: built from the run's manifest (dataset, split, metrics, environment, lineage), the registry's record of
the version and the promotion judge's decision (its paired test, guards and latency). Stored by the promotion
flow beside the version's run and shown in the Prefect UI; `<package> models card <version|alias>` prints it.

Anything a manifest does not hold (written by a release that did not record it: the leakage check, the
environment digest) reads "not recorded", never a guess.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

from .artifacts import runs as runs_catalog
from .artifacts.manifest import RunManifest, read_manifest
from .artifacts.registry import ModelVersion, Registry
from .artifacts.store import OBJECTS, ArtifactRef, ArtifactStore
from .settings import PACKAGE

CARD_NAME = "model-card.md"  # beside the version's run: runs/<run_id>/model-card.md
NOT_RECORDED = "not recorded"

_MODEL_DESCRIPTIONS = {
    "popularity": "the most interacted-with items, the same for every user (the baseline to beat)",
    "itemknn": "items similar (by co-occurrence) to those the user interacted with",
    "ease": "a closed-form item-to-item linear model (EASE) over the user's past interactions",
    "bpr": "matrix factorisation trained with Bayesian personalised ranking (BPR-MF)",
    "ials": "matrix factorisation of implicit feedback by alternating least squares (iALS)",
}


def build(registry: Registry, store: ArtifactStore, version: ModelVersion) -> str:
    """The card of `version` as the registry and the store hold it now: its run's manifest and its latest
    decision (the decision's own stored record, which holds the paired test, guards and latency)."""
    manifest = read_manifest(json.loads(store.read_text(store.relative(version.manifest_uri))))
    records = registry.decisions(version.version)
    if not records:
        return render(manifest, version, None)
    latest = records[-1]
    ref = ArtifactRef(
        id=latest.decision_id,
        uri=f"{OBJECTS}/{latest.decision_id[:2]}/{latest.decision_id}.json",
        kind="promotion-decision",
        size=0,  # not read: the object is found by its id and checked against it
    )
    return render(manifest, version, store.get_json(ref), latest.at, latest.decision_id)


def save(store: ArtifactStore, version: ModelVersion, card: str) -> ArtifactRef:
    """Keep the card content-addressed (`verify` checks it with every object) and by name beside the
    version's run, where `models card` reads it; returns the object's reference."""
    ref = store.put_bytes(card.encode(), kind="model-card", suffix=".md")
    store.write_text(card_path(version), card)
    return ref


def stored(store: ArtifactStore, version: ModelVersion) -> str | None:
    """The card kept for `version` (None: it was judged before cards were kept, or never)."""
    try:
        return store.read_text(card_path(version))
    except FileNotFoundError:
        return None


def card_path(version: ModelVersion) -> str:
    """Where a version's card is kept, inside the store: beside the manifest of the run that registered it."""
    return f"runs/{version.run_id}/{CARD_NAME}"


def render(
    manifest: RunManifest,
    version: ModelVersion,
    decision: Mapping[str, Any] | None,
    decided_at: str | None = None,
    decision_id: str | None = None,
) -> str:
    """The card of `version`, registered from the run `manifest` and judged as `decision` (a
    `promotion.Decision` as a dict; None: not judged yet) at `decided_at`, stored as `decision_id`."""
    sections = [
        _title(manifest, version, decision),
        _intended_use(manifest, version),
        _dataset(manifest),
        _split(manifest),
        _metrics(manifest),
        _comparison(decision),
        _decision(decision, decided_at, decision_id),
        _environment(manifest),
        _lineage(manifest, version, decision_id),
    ]
    return "\n\n".join(s.rstrip("\n") for s in sections) + "\n"


def _title(manifest: RunManifest, version: ModelVersion, decision: Mapping[str, Any] | None) -> str:
    return (
        f"# Model card: {manifest.dataset.name} version {version.version} ({version.model_name})\n\n"
        f"Decision: **{_verdict(decision)}**. Registered {_when(version.created_at)} by {version.created_by}."
    )


def _verdict(decision: Mapping[str, Any] | None) -> str:
    # The policy's verdict: the alias moves after it (and after a person's approval where one is asked for).
    if decision is None:
        return "not judged yet"
    return "promote" if decision["promote"] else "keep out"


def _intended_use(manifest: RunManifest, version: ModelVersion) -> str:
    evaluation = manifest.config.get("evaluation", {})
    ks = sorted(set(evaluation.get("k", []))) or ["K"]
    what = _MODEL_DESCRIPTIONS.get(version.model_name, f"the `{version.model_name}` model")
    d = manifest.dataset
    return "\n".join(
        [
            "## Intended use",
            "",
            f"Ranks, for a user of the dataset `{d.name}` ({d.source} source), the top {ks[-1]} items they "
            f"have not interacted with yet, by {what}. It was judged on "
            f"`{evaluation.get('primary_metric', NOT_RECORDED)}` at K in {', '.join(map(str, ks))}.",
            "",
            "Not for:",
            f"- users or items absent from snapshot `{d.id[:12]}` ({d.users:,} users, {d.items:,} items): "
            "an unknown user gets no recommendations, an unknown item is never ranked;",
            "- another dataset: its ids are read as this dataset's ids, so they mean other things;",
            "- decisions beyond ranking (eligibility, pricing, anything about a person): it was measured "
            "only on how well it ranks held-out interactions, offline, and learns whatever bias they hold.",
        ]
    )


def _dataset(manifest: RunManifest) -> str:
    d = manifest.dataset
    span = (
        f"{_epoch(d.first_timestamp)} to {_epoch(d.last_timestamp)}"
        if d.first_timestamp is not None and d.last_timestamp is not None
        else "no timestamps"
    )
    density = d.rows / (d.users * d.items) if d.users and d.items else 0.0
    lines = [
        "## Dataset",
        "",
        "| | |",
        "| --- | --- |",
        f"| name | `{d.name}` |",
        f"| snapshot id | `{d.id}` |",
        f"| source | {d.source} |",
        f"| interactions | {d.rows:,} |",
        f"| users | {d.users:,} |",
        f"| items | {d.items:,} |",
        f"| density | {density:.4%} |",
        f"| time span | {span} |",
        f"| validation | {manifest.validation} |",
    ]
    for source in d.inputs:  # the file's name only: the card is shared, the folder is one machine's
        name = PurePath(str(source.get("path") or "input")).name
        lines.append(f"| input | {name}, sha256 `{str(source.get('sha256', ''))[:12]}` |")
    return "\n".join(lines)


def _split(manifest: RunManifest) -> str:
    s = manifest.split
    total = s.train_rows + s.test_rows
    share = f" ({s.test_rows / total:.1%} held out)" if total else ""
    return "\n".join(
        [
            "## Split and leakage check",
            "",
            f"Strategy: {s.strategy}. Train {s.train_rows:,} rows, test {s.test_rows:,} rows{share}.",
            "",
            f"Leakage check: {_leakage(manifest)}.",
        ]
    )


def _leakage(manifest: RunManifest) -> str:
    """The split's leakage check, where the run recorded one."""
    if manifest.split.leakage is None:
        return NOT_RECORDED
    return runs_catalog.leakage_summary(manifest)


def _metrics(manifest: RunManifest) -> str:
    primary = manifest.config.get("evaluation", {}).get("primary_metric")
    lines = [
        "## Metrics on the test split",
        "",
        "Per-user metrics averaged over test users; the interval is a 95% bootstrap over users.",
        "",
        "| metric | value | 95% interval |",
        "| --- | --- | --- |",
    ]
    for name, value in sorted(manifest.metrics.items()):
        if "@" not in name:  # counts (users evaluated, skipped), shown below the table
            continue
        bounds = manifest.metric_intervals.get(name)
        interval = f"[{bounds[0]:.4f}, {bounds[1]:.4f}]" if bounds else NOT_RECORDED
        label = f"**{name}**" if name == primary else name
        lines.append(f"| {label} | {value:.4f} | {interval} |")
    users, skipped = manifest.metrics.get("users"), manifest.metrics.get("users_skipped")
    if users is not None:
        lines += [
            "",
            f"Evaluated on {int(users):,} test users ({int(skipped or 0):,} skipped: nothing to rank).",
        ]
    return "\n".join(lines)


def _comparison(decision: Mapping[str, Any] | None) -> str:
    head = "## Comparison"
    if decision is None:
        return f"{head}\n\nNot judged yet."
    c, metric = decision.get("comparison", {}), decision["metric"]
    lines = [head, ""]
    if "difference" in c:
        low, high = c["interval"]
        lines += [
            f"Against the {decision['reference']}, paired bootstrap over the {c['users']:,} test users both "
            f"ranked, on `{metric}`:",
            "",
            "| | |",
            "| --- | --- |",
            f"| challenger | {c['mean_a']:.4f} |",
            f"| {decision['reference']} | {c['mean_b']:.4f} |",
            f"| difference | {c['difference']:+.4f} |",
            f"| {c['confidence']:.0%} interval | [{low:+.4f}, {high:+.4f}] |",
            f"| p-value (two-sided) | {_p_value(c['p_value'])} |",
            f"| required | interval above {c['margin']:+.4f}: {'yes' if c['passed'] else 'no'} |",
        ]
    else:
        lines.append(f"No paired test: nothing to compare with ({decision['reference']}).")
    if decision.get("guards"):
        lines += ["", "Guards (largest tolerated drop against the reference):", ""]
        lines += [
            "| metric | challenger | reference | tolerance | passed |",
            "| --- | --- | --- | --- | --- |",
        ]
        for g in decision["guards"]:
            lines.append(
                f"| {g['metric']} | {g['challenger']:.4f} | {g['reference']:.4f} | {g['tolerance']:.4f} | "
                f"{'yes' if g['passed'] else 'no'} |"
            )
    lat = decision.get("latency") or {}
    if lat:
        budget = "no budget" if lat.get("budget_ms") is None else f"budget {lat['budget_ms']:.0f} ms"
        lines += [
            "",
            f"Latency: {lat['ms_per_1k']:.1f} ms to rank the top {int(lat['k'])} for 1,000 users "
            f"({budget}): {'within' if lat['passed'] else '**over**'}.",
        ]
    return "\n".join(lines)


def _decision(decision: Mapping[str, Any] | None, decided_at: str | None, decision_id: str | None) -> str:
    if decision is None:
        return "## Decision\n\nNot judged yet."
    when = f" at {_when(decided_at)}" if decided_at else ""
    stored = f" Stored as decision `{decision_id}`." if decision_id else ""
    moved = (
        " The champion alias moves to it once the version is refit for serving (and approved, where "
        "`promotion.manual_approval` asks for a person); `models history` records the move."
        if decision["promote"]
        else ""
    )
    return f"## Decision\n\n**{_verdict(decision)}**{when}. {decision['reason']}{stored}{moved}"


def _environment(manifest: RunManifest) -> str:
    e = manifest.environment
    code = e.code
    git = (
        NOT_RECORDED if code.git_commit is None else code.git_commit + (" (dirty)" if code.git_dirty else "")
    )
    return "\n".join(
        [
            "## Environment",
            "",
            "| | |",
            "| --- | --- |",
            f"| python | {e.python} ({e.implementation}) |",
            f"| platform | {e.platform} |",
            f"| torch | {e.torch.version}, {e.torch.threads} threads, deterministic "
            f"{'on' if e.torch.deterministic_algorithms else 'off'} |",
            f"| packages | {len(e.packages)} recorded |",
            f"| environment digest | {f'`{e.digest}`' if e.digest else NOT_RECORDED} |",
            f"| lock file | {f'{e.lock.path} `{e.lock.sha256[:12]}`' if e.lock else NOT_RECORDED} |",
            f"| package code | `{code.package_sha256}` |",
            f"| flows code | `{code.flows_sha256 or NOT_RECORDED}` |",
            f"| git commit | {git} |",
        ]
    )


def _lineage(manifest: RunManifest, version: ModelVersion, decision_id: str | None) -> str:
    rows = [
        ("registry version", str(version.version)),
        ("run", manifest.run_id + (f" ({manifest.flow_run_name})" if manifest.flow_run_name else "")),
        ("run manifest", version.manifest_id),
        ("config fingerprint", manifest.config_fingerprint),
        ("seed", str(manifest.seed)),
        ("snapshot", manifest.dataset.id),
    ]
    for name in ("train", "test", "model", "metrics_per_user"):
        if name in manifest.artifacts:
            rows.append((name, manifest.artifacts[name].id))
    if decision_id:
        rows.append(("promotion decision", decision_id))
    lines = ["## Lineage", "", "| | id |", "| --- | --- |"]
    lines += [f"| {name} | `{value}` |" for name, value in rows]
    lines += [
        "",
        f"`{PACKAGE} lineage {manifest.run_id}` shows what made each of them. Once promoted, the version is "
        f"served by a refit of this model on its whole snapshot: `{PACKAGE} models show {version.version}` "
        "names it.",
    ]
    return "\n".join(lines)


def _p_value(p: float) -> str:
    # A bootstrap p-value of 0 means no resample crossed zero: below the resolution, not zero.
    return "< 0.0005" if p == 0 else f"{p:.4f}"


def _epoch(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")


def _when(iso: str) -> str:
    return iso[:19].replace("T", " ") + " UTC"
