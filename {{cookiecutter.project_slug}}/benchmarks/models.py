"""Model timings on synthetic data of MovieLens 1M's shape (6,040 users, 3,706 items, 1M interactions).

    python benchmarks/models.py [--threads 2] [--epochs 3]

Prints seconds for: EASE fit; scoring + masking seen items + top-10 for every user, in the evaluation's
batches, for EASE and BPR-MF; BPR-MF per epoch and iALS per iteration (the models' own epoch clocks, set-up
excluded). Fits and rankings run three times after a warm-up and the median is shown.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.models import build_model
from {{ cookiecutter.package_name }}.models.base import top_k
from {{ cookiecutter.package_name }}.settings import BPRConfig, IALSConfig, ModelConfig, SyntheticConfig

ML1M_SHAPE = SyntheticConfig(n_users=6_040, n_items=3_706, n_interactions=1_000_209, with_rating=False)


def median_seconds(step: Callable[[], object], repeats: int = 3) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def rank_all_users(model, batch_size: int = 2_048) -> None:
    for start in range(0, model.n_users, batch_size):
        users = torch.arange(start, min(start + batch_size, model.n_users))
        top_k(model.exclude_seen(model.score(users), users), 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)  # as in training: the figures are for the reproducible path

    frame = generate(ML1M_SHAPE, seed=0)
    users, items = frame["user_id"].n_unique(), frame["item_id"].n_unique()
    print(f"data: {frame.height:,} interactions, {users:,} users, {items:,} items; threads {args.threads}")

    ease = build_model(ModelConfig(name="ease"))
    timings = {"ease fit": median_seconds(lambda: ease.fit(frame, seed=0))}
    timings["ease score + mask + top-10, all users"] = median_seconds(lambda: rank_all_users(ease))

    bpr = build_model(ModelConfig(name="bpr", bpr=BPRConfig(epochs=args.epochs)))
    started = time.perf_counter()
    bpr.fit(frame, seed=0)
    timings["bpr fit, all epochs"] = time.perf_counter() - started
    timings["bpr per epoch"] = statistics.median(bpr.epoch_seconds)
    timings["bpr score + mask + top-10, all users"] = median_seconds(lambda: rank_all_users(bpr))

    ials = build_model(ModelConfig(name="ials", ials=IALSConfig(iterations=args.epochs)))
    ials.fit(frame, seed=0)
    timings["ials per iteration"] = statistics.median(ials.epoch_seconds)

    for step, seconds in timings.items():
        print(f"{step:<40} {seconds:8.3f} s")


if __name__ == "__main__":
    main()
