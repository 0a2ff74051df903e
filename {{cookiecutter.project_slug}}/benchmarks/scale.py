"""How the pipeline's time and memory grow with the data: 100k, 1M and 10M synthetic interactions.

    python benchmarks/scale.py [--sizes 100k,1m,10m] [--epochs N] [--challenger] [--json results.json]

Each size runs the whole pipeline (ingest, validate, split, train, evaluate, record, then registration and
the promotion judge, as `{{ cookiecutter.package_name }} run` does) in a fresh process with its own artifact store in a
temporary folder, on configs/experiments/scale-10m.yaml with the synthetic shape scaled down: n interactions,
n / 50 users and max(n / 200, 1,000) items (100k is the default dataset; 10m is 200k users x 50k items).
Prints a Markdown table: per step, wall seconds and the process's peak resident memory (MB) while the step
ran, then the process's start-up and Prefect overhead, the total wall time and the process's overall peak.
Promotion is also split into the refit for serving (a promoted model is trained again on its whole snapshot)
and the rest: registration and the judge.

With --challenger, a second run follows in the same store on the same data (BPR with one more epoch), so its
judge compares it with the first run's model, the champion if it was promoted, evaluated on the same split;
its steps are the rows marked "(2nd run)" (its ingest, validation and split are cached).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "configs" / "default.yaml", ROOT / "configs" / "experiments" / "scale-10m.yaml"]
STEPS = ("inspect-inputs", "ingest", "validate", "split", "train", "evaluate", "record", "promotion")
PARTS = ("promotion: refit for serving", "promotion: register and judge")


def shape(size: str) -> dict[str, int]:
    """`100k`, `1m`, `2.5m` or a plain number -> the synthetic data section for that many interactions."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([km]?)", size.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"size {size!r} is not like 100k, 1m or 10m")
    n = int(float(match[1]) * {"": 1, "k": 1_000, "m": 1_000_000}[match[2]])
    return {"n_interactions": n, "n_users": max(n // 50, 1), "n_items": max(n // 200, 1_000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,1m,10m", help="Comma-separated sizes, e.g. 100k,1m,10m")
    parser.add_argument("--epochs", type=int, help="BPR epochs (default: the scale config's)")
    parser.add_argument("--json", type=Path, help="Also write the measurements here")
    parser.add_argument(
        "--challenger", action="store_true", help="Also a second run, judged against the first's model"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one size in this process
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _run_one(args.child, args.epochs, args.out, args.challenger)
        return
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for size in sizes:
        shape(size)  # refuse a bad size before minutes of work
    results = {}
    for size in sizes:
        results[size] = _measure(size, args.epochs, args.challenger)
        print(f"{size}: {_describe(results[size])}", flush=True)
    print()
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _measure(size: str, epochs: int | None, challenger: bool = False) -> dict[str, Any]:
    """Run one size in a fresh interpreter (nothing cached, nothing allocated by an earlier size)."""
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", size, "--out", str(out)]
        if epochs is not None:
            command += ["--epochs", str(epochs)]
        if challenger:
            command.append("--challenger")
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-5_000:] + done.stderr[-5_000:])
            raise SystemExit(f"the {size} run failed (exit {done.returncode})")
        return {**json.loads(out.read_text()), "wall_seconds": round(wall, 2)}


def _run_one(size: str, epochs: int | None, out: Path, challenger: bool = False) -> None:
    """The child: the pipeline as `run` starts it, with its store beside `out`; measurements into `out`."""
    import resource

    from {{ cookiecutter.package_name }}.cli.runner import run_pipeline  # the same in-process run as `run`
    from {{ cookiecutter.package_name }}.settings import deep_merge, load_settings

    overrides: dict[str, Any] = {
        "data": {"synthetic": shape(size)},
        "storage": {"uri": str(out.parent / "artifacts")},
        "tags": {"benchmark": f"scale-{size}"},
    }
    if epochs is not None:
        overrides["model"] = {"bpr": {"epochs": epochs}}
    settings = load_settings(CONFIGS, overrides)
    summary = run_pipeline(settings).result()  # raises the flow's error
    steps = _steps(summary, settings)
    promotion = summary.get("promotion") or {}
    second_reference = None
    if challenger:  # the same data and split, one more epoch: judged against the first run's model
        more = {"model": {"bpr": {"epochs": settings.model.bpr.epochs + 1}}}
        second = load_settings(CONFIGS, deep_merge(overrides, more))
        later = run_pipeline(second).result()
        steps |= {f"{name} (2nd run)": value for name, value in _steps(later, second).items()}
        second_reference = ((later.get("promotion") or {}).get("decision") or {}).get("reference")
    result = {
        "interactions": summary["dataset"]["rows"],
        "users": summary["dataset"]["users"],
        "items": summary["dataset"]["items"],
        "model": summary["model"],
        "ndcg@10": summary["metrics"]["ndcg@10"],
        "promoted": promotion.get("promoted"),
        "reference_ndcg@10": promotion.get("decision", {}).get("comparison", {}).get("mean_b"),
        "second_run_reference": second_reference,
        "steps": steps,
        # The kernel's high-water mark (KB on Linux) for the whole process, start-up and Prefect included;
        # psutil's samples during a step can read a little above it (they count pages a bit differently).
        "process_peak_rss_mb": round(
            max(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                *(s["peak_rss_mb"] for s in steps.values()),
            ),
            1,
        ),
    }
    out.write_text(json.dumps(result))


def _steps(summary: dict[str, Any], settings: Any) -> dict[str, dict[str, float]]:
    """Each step's seconds and peak memory, and promotion's refit for serving (if it made one) beside it."""
    from {{ cookiecutter.package_name }}.artifacts.registry import open_registry

    steps = {name: {k: t[k] for k in ("seconds", "peak_rss_mb")} for name, t in summary["tasks"].items()}
    steps |= summary["after_manifest"]
    promotion = summary.get("promotion") or {}
    if "promotion" in steps:
        version = open_registry(settings.registry, settings.storage).get(promotion["version"])
        # A refit made by this run (a version promoted before kept its own).
        refit = (version.serving or {}).get("seconds", 0.0) if promotion.get("serving") else 0.0
        total = steps["promotion"]
        steps[PARTS[0]] = {"seconds": refit, "peak_rss_mb": total["peak_rss_mb"]}
        steps[PARTS[1]] = {"seconds": round(total["seconds"] - refit, 3), "peak_rss_mb": total["peak_rss_mb"]}
    return steps


def _part(step: str) -> bool:
    """Whether a row is a part of promotion's time (counted in its row already)."""
    return step.startswith("promotion: ")


def _describe(r: dict[str, Any]) -> str:
    reference = r["reference_ndcg@10"]
    versus = f" vs {reference:.4f} for the reference" if reference is not None else ""
    second = r.get("second_run_reference")
    return (
        f"{r['interactions']:,} interactions, {r['users']:,} users, {r['items']:,} items; {r['model']} "
        f"NDCG@10 {r['ndcg@10']:.4f}{versus}; promoted: {r['promoted']}; {r['wall_seconds']:.0f} s"
        + (f"; 2nd run judged against the {second}" if second else "")
    )


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per step, `seconds` and `peak MB` columns per size."""
    sizes = list(results)
    header = "| step | " + " | ".join(f"{s} s | {s} peak MB" for s in sizes) + " |"
    lines = [header, "|---|" + "---:|---:|" * len(sizes)]
    rows = [*STEPS, *PARTS]
    rows += [f"{step} (2nd run)" for step in ("train", "evaluate", "promotion", *PARTS)]
    for step in rows:
        if not any(step in r["steps"] for r in results.values()):
            continue
        cells = []
        for size in sizes:
            measured = results[size]["steps"].get(step)
            cells += (
                [f"{measured['seconds']:.1f}", f"{measured['peak_rss_mb']:,.0f}"] if measured else ["", ""]
            )
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    overhead = [
        f"{r['wall_seconds'] - sum(m['seconds'] for n, m in r['steps'].items() if not _part(n)):.1f}"
        for r in results.values()
    ]
    lines.append("| start-up, Prefect, other | " + " | ".join(f"{o} | " for o in overhead) + " |")
    lines.append(
        "| **total** | "
        + " | ".join(
            f"**{r['wall_seconds']:.1f}** | **{r['process_peak_rss_mb']:,.0f}**" for r in results.values()
        )
        + " |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
