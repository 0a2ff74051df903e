"""The promotion policy: may a newly trained model (the challenger) replace the champion?

Pure: it takes evaluations (their `Scores`: per-user metrics and summary) that were computed on the
challenger's own split and returns a `Decision` with its numbers and a reason a person can read. The rules,
in order:

1. Against the champion, judged on the same test users (the champion ranked as served, see
   `evaluation.evaluate(as_served=True)`): the paired-bootstrap interval of the per-user difference on the
   primary metric, at `confidence`, must lie above `margin`. A point estimate ahead is not enough.
2. With no champion yet, the reference is the popularity baseline fitted on the same training data: the first
   model is promoted when it beats popularity by the same test. (A popularity model, being the baseline, is
   promoted as the first champion as it is.)
3. Guards: each guarded metric may drop at most its tolerance against the reference.
4. Latency: ranking the top K for 1,000 users must fit the budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .settings import PromotionConfig

if TYPE_CHECKING:  # evaluation imports torch: the pipeline's flow module loads this one without it
    from .evaluation import Scores


@dataclass(frozen=True)
class Decision:
    """The verdict on a challenger, with every number it rests on, as stored beside the registry's record."""

    promote: bool
    reason: str
    challenger: int  # registry version
    reference: str  # "champion v3" or "popularity baseline"
    champion: int | None
    metric: str
    comparison: dict[str, Any]  # the paired test: difference, interval, p-value, users, margin, confidence
    guards: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: the decision artifact the registry's record points to."""
        return asdict(self)

    def markdown(self) -> str:
        """The decision for a person: what the Prefect UI shows, and what an approver reads."""
        verdict = "**promoted**" if self.promote else "**not promoted**"
        c = self.comparison
        lines = [
            f"# Promotion decision: version {self.challenger} {verdict}",
            "",
            f"{self.reason}",
            "",
            f"Compared with the {self.reference} on {c.get('users', 0)} test users (paired bootstrap).",
            "",
            "| check | challenger | reference | threshold | passed |",
            "| --- | --- | --- | --- | --- |",
        ]
        if "difference" in c:
            low, high = c["interval"]
            lines.append(
                f"| {self.metric} gain | {c['mean_a']:.4f} | {c['mean_b']:.4f} | "
                f"{c['confidence']:.0%} interval [{low:+.4f}, {high:+.4f}] > {c['margin']:+.4f} | "
                f"{'yes' if c['passed'] else 'no'} |"
            )
        for g in self.guards:
            lines.append(
                f"| {g['metric']} | {g['challenger']:.4f} | {g['reference']:.4f} | "
                f"drop <= {g['tolerance']:.4f} | {'yes' if g['passed'] else 'no'} |"
            )
        if self.latency:
            lat = self.latency
            budget = "none" if lat["budget_ms"] is None else f"<= {lat['budget_ms']:.0f} ms"
            lines.append(
                f"| ms per 1k users (top {lat['k']}) | {lat['ms_per_1k']:.1f} | | {budget} | "
                f"{'yes' if lat['passed'] else 'no'} |"
            )
        return "\n".join(lines) + "\n"


def decide(
    policy: PromotionConfig,
    *,
    metric: str,
    version: int,
    challenger: Scores,
    reference: Scores | None,
    reference_label: str,
    champion: int | None,
    latency: dict[str, Any],
    seed: int,
) -> Decision:
    """Apply the policy. `reference` is the champion's (or, with no champion, popularity's) evaluation on the
    challenger's split; None when the challenger is itself the popularity baseline and there is no champion.
    """
    from .evaluation import paired_test

    failures: list[str] = []
    comparison: dict[str, Any] = {"margin": policy.margin, "confidence": policy.confidence}
    guards: list[dict[str, Any]] = []
    if reference is not None:
        test = paired_test(challenger, reference, metric, seed=seed, level=policy.confidence)
        passed = test.interval[0] > policy.margin
        comparison |= {**asdict(test), "passed": passed}
        if not passed:
            failures.append(
                f"{metric} gain over the {reference_label} is {test.difference:+.4f} with a "
                f"{policy.confidence:.0%} interval [{test.interval[0]:+.4f}, {test.interval[1]:+.4f}], "
                f"which does not clear the margin {policy.margin:+.4f}"
            )
        for name, tolerance in sorted(policy.guards.items()):
            if name not in challenger.summary or name not in reference.summary:
                raise ValueError(
                    f"guard metric {name!r} is not evaluated; evaluated: {sorted(challenger.summary)}"
                )
            new, old = challenger.summary[name], reference.summary[name]
            ok = new >= old - tolerance
            guards.append(
                {"metric": name, "challenger": new, "reference": old, "tolerance": tolerance, "passed": ok}
            )
            if not ok:
                failures.append(f"{name} drops from {old:.4f} to {new:.4f}, more than {tolerance:.4f}")
    budget = policy.latency_budget_ms
    latency = {**latency, "budget_ms": budget, "passed": budget is None or latency["ms_per_1k"] <= budget}
    if not latency["passed"]:
        failures.append(
            f"ranking 1,000 users takes {latency['ms_per_1k']:.0f} ms, over the {budget:.0f} ms budget"
        )

    if failures:
        reason = "Kept out: " + "; ".join(failures) + "."
    elif reference is None:
        reason = "No champion yet; the popularity baseline becomes the first champion."
    else:
        reason = (
            f"{metric} {comparison['mean_a']:.4f} vs {comparison['mean_b']:.4f} for the {reference_label}: "
            f"gain {comparison['difference']:+.4f}, {policy.confidence:.0%} interval "
            f"[{comparison['interval'][0]:+.4f}, {comparison['interval'][1]:+.4f}] above the margin "
            f"{policy.margin:+.4f}; guards and latency within limits."
        )
    return Decision(
        promote=not failures,
        reason=reason,
        challenger=version,
        reference=reference_label,
        champion=champion,
        metric=metric,
        comparison=comparison,
        guards=guards,
        latency=latency,
    )
