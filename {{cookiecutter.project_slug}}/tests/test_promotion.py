"""The promotion policy on real evaluations of real models (synthetic data with a clear structure)."""

from __future__ import annotations

import polars as pl
import pytest

from {{ cookiecutter.package_name }}.data.split import split
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.evaluation import Evaluation, evaluate
from {{ cookiecutter.package_name }}.models import build_model
from {{ cookiecutter.package_name }}.promotion import decide
from {{ cookiecutter.package_name }}.settings import ModelConfig, PromotionConfig, SplitConfig, SyntheticConfig

pytestmark = pytest.mark.unit

KS = [10]
FAST = {"ms_per_1k": 5.0, "users": 1000.0, "k": 10.0}


@pytest.fixture(scope="module")
def parts() -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = generate(SyntheticConfig(n_users=600, n_items=300, n_interactions=20_000), seed=3)
    s = split(frame, SplitConfig(strategy="random", test_fraction=0.2), seed=3)
    return s.train, s.test


def _evaluate(name: str, parts: tuple[pl.DataFrame, pl.DataFrame], **cfg: object) -> Evaluation:
    train, test = parts
    model = build_model(ModelConfig(name=name, **cfg)).fit(train, 0)
    return evaluate(model, train, test, KS)


def test_a_clearly_better_challenger_is_promoted(parts) -> None:
    ease, popularity = _evaluate("ease", parts), _evaluate("popularity", parts)
    decision = decide(
        PromotionConfig(),
        metric="ndcg@10",
        version=2,
        challenger=ease,
        reference=popularity,
        reference_label="champion v1",
        champion=1,
        latency=FAST,
        seed=0,
    )
    assert decision.promote, decision.reason
    assert decision.comparison["interval"][0] > 0 and decision.comparison["users"] == ease.per_user.height
    assert "above the margin" in decision.reason
    assert "promoted" in decision.markdown() and "| ndcg@10 gain |" in decision.markdown()


def test_a_worse_challenger_is_kept_out_and_the_reason_says_why(parts) -> None:
    ease, popularity = _evaluate("ease", parts), _evaluate("popularity", parts)
    decision = decide(
        PromotionConfig(),
        metric="ndcg@10",
        version=2,
        challenger=popularity,
        reference=ease,
        reference_label="champion v1",
        champion=1,
        latency=FAST,
        seed=0,
    )
    assert not decision.promote
    assert "ndcg@10 gain over the champion v1 is -" in decision.reason
    assert decision.comparison["difference"] < 0


def test_a_gain_that_is_not_significant_is_not_enough(parts) -> None:
    """The same model scored twice: equal point estimates, so no promotion; nor with a small real gain and
    a margin larger than that gain."""
    ease = _evaluate("ease", parts)
    same = decide(
        PromotionConfig(),
        metric="ndcg@10",
        version=2,
        challenger=ease,
        reference=ease,
        reference_label="champion v1",
        champion=1,
        latency=FAST,
        seed=0,
    )
    assert not same.promote and "does not clear the margin" in same.reason
    weaker = _evaluate("ease", parts, ease={"l2": 2_000.0})
    gain = ease.summary["ndcg@10"] - weaker.summary["ndcg@10"]
    assert gain > 0  # ahead on the point estimate...
    strict = PromotionConfig(margin=gain * 2)
    decision = decide(
        strict,
        metric="ndcg@10",
        version=2,
        challenger=ease,
        reference=weaker,
        reference_label="champion v1",
        champion=1,
        latency=FAST,
        seed=0,
    )
    assert not decision.promote  # ...but not by the margin the policy asks for
    assert f"margin +{gain * 2:.4f}" in decision.reason


def test_guards_and_latency_can_keep_a_more_accurate_model_out(parts) -> None:
    ease, popularity = _evaluate("ease", parts), _evaluate("popularity", parts)
    # Popularity has near-zero coverage: judged against EASE on coverage it must fail the guard.
    policy = PromotionConfig(guards={"coverage@10": 0.01}, margin=0.0)
    against_ease = decide(
        policy,
        metric="ndcg@10",
        version=2,
        challenger=popularity,
        reference=ease,
        reference_label="champion v1",
        champion=1,
        latency=FAST,
        seed=0,
    )
    assert [g["passed"] for g in against_ease.guards] == [False]
    assert "coverage@10 drops from" in against_ease.reason
    slow = {"ms_per_1k": 5_000.0, "users": 1000.0, "k": 10.0}
    decision = decide(
        PromotionConfig(latency_budget_ms=100.0),
        metric="ndcg@10",
        version=2,
        challenger=ease,
        reference=popularity,
        reference_label="v1",
        champion=1,
        latency=slow,
        seed=0,
    )
    assert not decision.promote and "over the 100 ms budget" in decision.reason
    with pytest.raises(ValueError, match="not evaluated"):
        decide(
            PromotionConfig(guards={"coverage@50": 0.1}),
            metric="ndcg@10",
            version=2,
            challenger=ease,
            reference=popularity,
            reference_label="v1",
            champion=1,
            latency=FAST,
            seed=0,
        )


def test_the_first_model_must_beat_popularity(parts) -> None:
    popularity = _evaluate("popularity", parts)
    ease = _evaluate("ease", parts)
    first = decide(
        PromotionConfig(),
        metric="ndcg@10",
        version=1,
        challenger=ease,
        reference=popularity,
        reference_label="popularity baseline",
        champion=None,
        latency=FAST,
        seed=0,
    )
    assert first.promote and first.champion is None
    # BPR after one epoch at a tiny learning rate is close to random: below popularity, so not promoted.
    untrained = _evaluate("bpr", parts, bpr={"epochs": 1, "learning_rate": 1e-5})
    refused = decide(
        PromotionConfig(),
        metric="ndcg@10",
        version=1,
        challenger=untrained,
        reference=popularity,
        reference_label="popularity baseline",
        champion=None,
        latency=FAST,
        seed=0,
    )
    assert not refused.promote and "popularity baseline" in refused.reason
    # Popularity itself, with no champion yet, is the floor a first champion can be.
    floor = decide(
        PromotionConfig(),
        metric="ndcg@10",
        version=1,
        challenger=popularity,
        reference=None,
        reference_label="popularity baseline",
        champion=None,
        latency=FAST,
        seed=0,
    )
    assert floor.promote and "first champion" in floor.reason


def test_an_older_model_judged_as_served_on_a_newer_split(parts) -> None:
    """The champion was fitted on older data; as served, users it never saw get empty lists (not errors),
    and what the others did since is excluded from their lists like their older history."""
    train, test = parts
    # Older data: half the users, and 70% of their events.
    old_train = train.filter(pl.col("user_id") < 300).sample(fraction=0.7, seed=1)
    champion = build_model(ModelConfig(name="ease")).fit(old_train, 0)
    served = evaluate(champion, train, test, KS, as_served=True)
    challenger = evaluate(build_model(ModelConfig(name="ease")).fit(train, 0), train, test, KS)
    users = sorted(served.per_user.get_column("user_id").to_list())
    assert users == sorted(challenger.per_user.get_column("user_id").to_list())  # paired on the same users
    unknown = served.per_user.filter(pl.col("user_id") >= 300)
    assert unknown.height > 0 and unknown.get_column("ndcg@10").sum() == 0.0
    known = served.per_user.filter(pl.col("user_id") < 300)
    assert known.get_column("ndcg@10").sum() > 0
    # Items the user had in the newer training data are excluded too, not only the champion's own history.
    recommended = pl.DataFrame(
        {
            "user_id": served.per_user.get_column("user_id").to_numpy().repeat(served.top_items.shape[1]),
            "index": served.top_items.flatten(),
        }
    ).filter(pl.col("index") >= 0)
    recommended = recommended.with_columns(
        item_id=pl.Series(champion.vocabulary.items[recommended.get_column("index").to_numpy()])
    )
    newer_only = train.filter(pl.col("user_id") < 300).join(old_train, on=["user_id", "item_id"], how="anti")
    assert newer_only.height > 0
    assert recommended.join(train, on=["user_id", "item_id"], how="semi").height == 0
    with pytest.raises(ValueError, match="not fitted on this training frame"):
        evaluate(champion, train, test, KS)


def test_latency_is_measured_on_a_thousand_rankings_even_with_one_user() -> None:
    """One user timed once and multiplied by 1,000 would hide every per-call cost: the user is repeated."""
    from {{ cookiecutter.package_name }}.serving import latency_per_1k

    one = pl.DataFrame({"user_id": [7, 7, 7], "item_id": [1, 2, 3], "timestamp": [1, 2, 3]})
    model = build_model(ModelConfig(name="popularity")).fit(one, 0)
    latency = latency_per_1k(model, k=2)
    assert (latency["users"], latency["ranked"], latency["k"]) == (1.0, 1_000.0, 2.0)
    assert latency["ms_per_1k"] > 0
