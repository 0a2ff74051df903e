"""Model timings on synthetic data of MovieLens 1M's shape (6,040 users, 3,706 items, 1M interactions).

    python benchmarks/models.py [--threads 2] [--epochs 3] [--iterations 15] [--repeats 3]

Prints seconds for: EASE fit; scoring + masking seen items + top-10 for every user, in the evaluation's
batches, for EASE and BPR-MF (each run three times after a warm-up, the median shown); then the iALS and
BPR-MF fits beside the implicit library's (0.7.3, `pip install -r benchmarks/requirements.txt`) with the same
hyper-parameters and thread count, and the ratio. The fits alternate, ours then implicit's, `--repeats` times,
and the best of each is shown: on a shared machine the best run is the one least disturbed. Our fit starts
from the polars frame (vocabulary and CSR included), implicit's from a ready scipy CSR matrix. Without
implicit installed, only our fits are shown.

The parameterisations differ: our iALS gives an observed pair confidence 1 + alpha, implicit's gives it alpha,
so implicit runs with alpha + 1; the L2 penalty and the 3 CG steps per solve are the same.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import torch

from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.models import build_model
from {{ cookiecutter.package_name }}.models.base import top_k
from {{ cookiecutter.package_name }}.settings import BPRConfig, IALSConfig, ModelConfig, SyntheticConfig
from {{ cookiecutter.package_name }}.training import deterministic_kernels

ML1M_SHAPE = SyntheticConfig(n_users=6_040, n_items=3_706, n_interactions=1_000_209, with_rating=False)


def median_seconds(step: Callable[[], object], repeats: int = 3) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def seconds(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def rank_all_users(model, batch_size: int = 2_048) -> None:
    for start in range(0, model.n_users, batch_size):
        users = torch.arange(start, min(start + batch_size, model.n_users))
        top_k(model.exclude_seen(model.score(users), users), 10)


def implicit_fits(frame: pl.DataFrame, ials: IALSConfig, bpr: BPRConfig, threads: int) -> dict[str, Callable]:
    """implicit's fits with our hyper-parameters, on the same pairs; {} when implicit is not installed."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from scipy import sparse
        from threadpoolctl import threadpool_limits
    except ImportError:
        return {}
    users = np.unique(frame["user_id"].to_numpy(), return_inverse=True)[1]
    items = np.unique(frame["item_id"].to_numpy(), return_inverse=True)[1]
    matrix = sparse.csr_matrix((np.ones(users.size, dtype=np.float32), (users, items)))
    matrix.data[:] = 1.0  # repeated pairs count once, as in our models

    def fit(model: Any) -> Callable[[], object]:
        def run() -> None:
            with threadpool_limits(1, "blas"):  # implicit's advice: its own threads, single-threaded BLAS
                model().fit(matrix, show_progress=False)

        return run

    return {
        "ials": fit(
            lambda: AlternatingLeastSquares(
                factors=ials.factors,
                regularization=ials.regularization,
                alpha=1.0 + ials.alpha,
                iterations=ials.iterations,
                use_cg=True,  # 3 CG steps per solve, implicit's default, as ours
                num_threads=threads,
                random_state=0,
            )
        ),
        "bpr": fit(
            lambda: BayesianPersonalizedRanking(
                factors=bpr.factors,
                learning_rate=bpr.learning_rate,
                regularization=bpr.weight_decay,
                iterations=bpr.epochs,
                num_threads=threads,
                random_state=0,
            )
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--epochs", type=int, default=3, help="BPR-MF epochs")
    parser.add_argument("--iterations", type=int, default=IALSConfig().iterations, help="iALS iterations")
    parser.add_argument("--repeats", type=int, default=3, help="alternating fits per library; best shown")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    deterministic_kernels()  # as in training: the figures are for the reproducible path

    frame = generate(ML1M_SHAPE, seed=0)
    users, items = frame["user_id"].n_unique(), frame["item_id"].n_unique()
    print(f"data: {frame.height:,} interactions, {users:,} users, {items:,} items; threads {args.threads}")

    ease = build_model(ModelConfig(name="ease"))
    timings = {"ease fit": median_seconds(lambda: ease.fit(frame, seed=0))}
    timings["ease score + mask + top-10, all users"] = median_seconds(lambda: rank_all_users(ease))
    bpr_config, ials_config = BPRConfig(epochs=args.epochs), IALSConfig(iterations=args.iterations)
    bpr = build_model(ModelConfig(name="bpr", bpr=bpr_config)).fit(frame, seed=0)
    timings["bpr score + mask + top-10, all users"] = median_seconds(lambda: rank_all_users(bpr))
    for step, value in timings.items():
        print(f"{step:<46} {value:8.3f} s")

    ours = {
        "ials": lambda: build_model(ModelConfig(name="ials", ials=ials_config)).fit(frame, seed=0),
        "bpr": lambda: build_model(ModelConfig(name="bpr", bpr=bpr_config)).fit(frame, seed=0),
    }
    theirs = implicit_fits(frame, ials_config, bpr_config, args.threads)
    labels = {
        "ials": f"ials, {ials_config.factors} factors, {args.iterations} iterations, CG",
        "bpr": f"bpr-mf, {bpr_config.factors} factors, {args.epochs} epochs",
    }
    alternating = " (ours and implicit 0.7.3's, alternating)" if theirs else ""
    print(f"\nfit seconds, best of {args.repeats}{alternating}")
    print(f"{'':<46} {'ours':>8} {'implicit':>9} {'ratio':>6}  load (1-min average)")
    for name, fit in ours.items():
        best_ours = best_theirs = float("inf")
        for _ in range(args.repeats):
            best_ours = min(best_ours, seconds(fit))
            if theirs:
                best_theirs = min(best_theirs, seconds(theirs[name]))
        load = f"{os.getloadavg()[0]:.2f}"
        if theirs:
            ratio = best_ours / best_theirs
            print(f"{labels[name]:<46} {best_ours:8.3f} {best_theirs:9.3f} {ratio:5.1f}x  {load}")
        else:
            print(f"{labels[name]:<46} {best_ours:8.3f} {'-':>9} {'-':>6}  {load}")
    if not theirs:
        print("implicit is not installed: `pip install -r benchmarks/requirements.txt` adds the comparison")


if __name__ == "__main__":
    main()
