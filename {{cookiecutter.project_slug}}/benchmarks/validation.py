"""How long the validation gates take next to training, on synthetic data of a given size.

    python benchmarks/validation.py [--interactions 1000000]

Prints seconds for: generating the data, the snapshot suite, the batch suite (a 10% batch against the rest),
and training BPR-MF and EASE on the same data.
"""

from __future__ import annotations

import argparse
import time

from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.settings import ModelConfig, SyntheticConfig, ValidationConfig
from {{ cookiecutter.package_name }}.training import train
from {{ cookiecutter.package_name }}.validation import validate, validate_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.interactions
    cfg = SyntheticConfig(n_users=max(1_000, n // 50), n_items=max(500, n // 250), n_interactions=n)

    started = time.perf_counter()
    frame = generate(cfg, seed=0)
    print(f"generate {n:,} interactions: {time.perf_counter() - started:.2f} s")
    now = int(time.time())
    validate(frame.head(1_000), ValidationConfig(), now)  # the first call pays GX's import and set-up

    timings = {}
    started = time.perf_counter()
    assert validate(frame, ValidationConfig(), now).passed
    timings["validate snapshot"] = time.perf_counter() - started
    cut = int(frame.height * 0.9)
    started = time.perf_counter()
    validate_batch(frame.slice(cut), frame.head(cut), ValidationConfig(), now)
    timings["validate 10% batch vs rest"] = time.perf_counter() - started
    for name in ("bpr", "ease"):
        started = time.perf_counter()
        train(ModelConfig(name=name), frame, seed=0)
        timings[f"train {name}"] = time.perf_counter() - started
    for step, seconds in timings.items():
        print(f"{step:<28} {seconds:8.2f} s")


if __name__ == "__main__":
    main()
