"""The leakage check of a split: proof that train and test hold what the protocol says, and nothing more.

Run by the split step on the parts it is about to hand to training, recorded in the manifest with the hashes
of both parts (`lineage` and the model card show it), and fatal when it fails: a model evaluated on events it
was trained on scores well for the wrong reason, and nobody notices from the metrics.

What is checked (an event is a row's user, item and, when the data has them, timestamp: `schema.event_key`):
- every protocol: no event in both parts;
- temporal: no test event before the cut-off, no train event at or after it (the cut-off is the earliest
  test time);
- leave-last-out: each test user has one test event, not earlier than any of that user's train events;
- user-random: each test user keeps at least one event in train.
Counted, not judged: (user, item) pairs in both parts (repeat consumption at different times is not leakage,
but it is worth knowing when reading recall).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from .schema import event_key


class LeakageFound(ValueError):
    """A split put information from the test part into the training part; the message says which check."""


@dataclass(frozen=True)
class Check:
    """One property of the split, whether it holds, and the figure that shows it."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class LeakageCheck:
    """The checks of one split, by protocol; `passed` when every one holds."""

    strategy: str
    checks: list[Check]
    train_rows: int
    test_rows: int
    shared_pairs: int  # (user, item) pairs with events on both sides: informative, never a failure
    cutoff: int | None = None  # temporal: the first test time (Unix seconds)

    @property
    def passed(self) -> bool:
        """Whether every check of the protocol holds: a split that fails is never trained on."""
        return all(c.passed for c in self.checks)

    def summary(self) -> str:
        """One line: `passed (disjoint: 0 events in both; ...)` or which check failed."""
        verdict = "passed" if self.passed else "FAILED"
        return f"{verdict} ({'; '.join(f'{c.name}: {c.detail}' for c in self.checks)})"

    def document(self) -> dict[str, Any]:
        """JSON for the store and the manifest."""
        return {**asdict(self), "passed": self.passed}


def check_split(train: pl.DataFrame, test: pl.DataFrame, strategy: str) -> LeakageCheck:
    """The leakage check of `train`/`test` under the resolved protocol `strategy`."""
    key = event_key(test)
    both = test.select(key).join(train.select(key), on=key, how="semi").height
    checks = [Check("disjoint", both == 0, f"{both:,} event(s) in both parts")]
    cutoff = None
    if strategy == "temporal" and test.height:
        cutoff = int(test.get_column("timestamp").min())  # type: ignore[arg-type]  # ints: timestamps
        late = train.filter(pl.col("timestamp") >= cutoff).height
        checks.append(
            Check("before cut-off", late == 0, f"{late:,} train event(s) at or after the first test time")
        )
    elif strategy == "leave-last-out":
        checks.append(_last_event_is_test(train, test))
    elif strategy == "user-random":
        checks.append(_users_keep_train_events(train, test))
    pairs = ["user_id", "item_id"]
    shared = test.select(pairs).unique().join(train.select(pairs).unique(), on=pairs, how="semi").height
    return LeakageCheck(strategy, checks, train.height, test.height, shared, cutoff)


def ensure_no_leakage(check: LeakageCheck) -> None:
    """Raise `LeakageFound` naming the failed checks, unless every check passed."""
    if not check.passed:
        failed = [f"{c.name}: {c.detail}" for c in check.checks if not c.passed]
        raise LeakageFound(f"the {check.strategy} split leaks: {'; '.join(failed)}")


def _last_event_is_test(train: pl.DataFrame, test: pl.DataFrame) -> Check:
    per_user = test.group_by("user_id").agg(pl.len().alias("n"), pl.col("timestamp").min().alias("first"))
    several = per_user.filter(pl.col("n") > 1).height
    latest_train = train.group_by("user_id").agg(pl.col("timestamp").max().alias("latest"))
    earlier = per_user.join(latest_train, on="user_id").filter(pl.col("first") < pl.col("latest")).height
    return Check(
        "last event",
        several == 0 and earlier == 0,
        f"{several:,} user(s) with several test events, {earlier:,} with a test event before a train one",
    )


def _users_keep_train_events(train: pl.DataFrame, test: pl.DataFrame) -> Check:
    users = test.select("user_id").unique()
    bare = users.join(train.select("user_id").unique(), on="user_id", how="anti").height
    return Check("train kept", bare == 0, f"{bare:,} test user(s) with no event left in train")
