"""Ranking metrics checked by hand on a popularity model whose ranking is obvious."""

from __future__ import annotations

import math

import polars as pl
import pytest

from {{ cookiecutter.package_name }}.evaluation import evaluate
from {{ cookiecutter.package_name }}.models import build_model
from {{ cookiecutter.package_name }}.settings import ModelConfig

pytestmark = pytest.mark.unit


def _frame(pairs: list[tuple[int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [u for u, _ in pairs],
            "item_id": [i for _, i in pairs],
            "timestamp": list(range(len(pairs))),
        }
    )


# Item popularity in training: 1 (4 users) > 2 (3) > 3 (2) > 4 (1). Popularity ranks 1, 2, 3, 4.
TRAIN = _frame([(1, 1), (2, 1), (3, 1), (4, 1), (2, 2), (3, 2), (4, 2), (3, 3), (4, 3), (4, 4)])


@pytest.fixture(scope="module")
def model():
    return build_model(ModelConfig(name="popularity")).fit(TRAIN, 0)


def _dcg(ranks: list[int]) -> float:
    return sum(1 / math.log2(r + 1) for r in ranks)


def test_hand_computed_metrics(model) -> None:
    # user 1 saw item 1: its ranking is 2, 3, 4. Test {3, 9}: 3 is hit at rank 2; 9 is unknown to the model.
    # user 2 saw 1, 2: ranking 3, 4. Test {4}: hit at rank 2.
    # user 99 never trained: skipped.
    test = _frame([(1, 3), (1, 9), (2, 4), (2, 4), (99, 1)])
    result = evaluate(model, TRAIN, test, ks=[1, 2], batch_size=1)
    per_user = {row["user_id"]: row for row in result.per_user.iter_rows(named=True)}
    assert set(per_user) == {1, 2}
    assert per_user[1]["n_test"] == 2 and per_user[2]["n_test"] == 1  # duplicate test event counted once
    assert per_user[1]["ndcg@2"] == pytest.approx(_dcg([2]) / _dcg([1, 2]))
    assert per_user[1]["recall@2"] == pytest.approx(0.5)  # the unknown item stays in the denominator
    assert per_user[2]["ndcg@2"] == pytest.approx(_dcg([2]) / _dcg([1]))
    assert per_user[2]["recall@1"] == 0.0 and per_user[2]["hitrate@2"] == 1.0
    assert result.summary["users"] == 2 and result.summary["users_skipped"] == 1
    assert result.summary["hitrate@1"] == 0.0
    assert result.summary["ndcg@2"] == pytest.approx((per_user[1]["ndcg@2"] + per_user[2]["ndcg@2"]) / 2)


def test_k_beyond_catalogue_and_seen_everything(model) -> None:
    # user 4 saw every item: nothing can be recommended, so no hit even though item 1 is "relevant" again.
    test = _frame([(4, 1), (1, 4)])
    result = evaluate(model, TRAIN, test, ks=[10])
    per_user = {row["user_id"]: row for row in result.per_user.iter_rows(named=True)}
    assert per_user[4]["hitrate@10"] == 0.0
    assert per_user[1]["ndcg@10"] == pytest.approx(_dcg([3]) / _dcg([1]))


def test_ideal_dcg_counts_unknown_items_beyond_the_catalogue(model) -> None:
    # user 1 (saw item 1) is ranked 2, 3, 4; |T| = 6 (item 4 and five items the model never saw), K = 10 > 4
    # items: the ideal list still has min(|T|, K) = 6 hits, so NDCG and recall stay well below 1.
    result = evaluate(model, TRAIN, _frame([(1, 4), *((1, i) for i in range(90, 95))]), ks=[10])
    row = result.per_user.row(0, named=True)
    assert row["n_test"] == 6
    assert row["ndcg@10"] == pytest.approx(_dcg([3]) / _dcg([1, 2, 3, 4, 5, 6]))
    assert row["recall@10"] == pytest.approx(1 / 6) and row["hitrate@10"] == 1.0


def test_tied_scores_rank_by_item_id() -> None:
    # Items 5 and 1 are tied (two users each); user 3 saw only item 7, so ranks 1 then 5 (by raw id).
    train = _frame([(1, 5), (2, 5), (1, 1), (2, 1), (3, 7)])
    tied = build_model(ModelConfig(name="popularity")).fit(train, 0)
    row = evaluate(tied, train, _frame([(3, 5)]), ks=[1, 2]).per_user.row(0, named=True)
    assert row["hitrate@1"] == 0.0 and row["ndcg@2"] == pytest.approx(_dcg([2]))


def test_batch_size_does_not_change_results(model) -> None:
    test = _frame([(1, 3), (1, 4), (2, 3), (2, 4), (3, 4)])
    a, b = evaluate(model, TRAIN, test, ks=[1, 3], batch_size=1), evaluate(model, TRAIN, test, ks=[1, 3])
    assert a.per_user.equals(b.per_user) and a.summary == b.summary


def test_rejects_a_different_training_frame(model) -> None:
    with pytest.raises(ValueError, match="not fitted on this training frame"):
        evaluate(model, TRAIN.head(3), _frame([(1, 3)]), ks=[1])
    # As many distinct pairs as the model's, but not the same ones (user 1 has item 4 instead of user 4).
    other = pl.concat([TRAIN.head(TRAIN.height - 1), _frame([(1, 4)])])
    with pytest.raises(ValueError, match="not fitted on this training frame"):
        evaluate(model, other, _frame([(1, 3)]), ks=[1])
    # Repeated and reordered training events are the same training data.
    evaluate(model, pl.concat([TRAIN, TRAIN]).reverse(), _frame([(1, 3)]), ks=[1])


def test_rank_metrics_novelty_and_coverage_by_hand(model) -> None:
    # user 1 (saw item 1) is recommended 2, 3, 4 and has test items {3, 9}: one hit, at rank 2.
    result = evaluate(model, TRAIN, _frame([(1, 3), (1, 9)]), ks=[3])
    row = result.per_user.row(0, named=True)
    assert row["precision@3"] == pytest.approx(1 / 3)
    assert row["map@3"] == pytest.approx((1 / 2) / 2)  # P@2 at the hit, over min(|T|, K) = 2
    assert row["mrr@3"] == pytest.approx(1 / 2)
    # Training users: item 2 had 3 of 4, item 3 had 2 of 4, item 4 had 1 of 4.
    assert row["novelty@3"] == pytest.approx((-math.log2(3 / 4) - math.log2(2 / 4) - math.log2(1 / 4)) / 3)
    assert result.summary["coverage@3"] == pytest.approx(3 / 4)  # items 2, 3, 4 of the 4-item catalogue


def test_bootstrap_intervals_bracket_the_mean_and_are_seeded() -> None:
    from {{ cookiecutter.package_name }}.data.split import temporal_split
    from {{ cookiecutter.package_name }}.data.synthetic import generate
    from {{ cookiecutter.package_name }}.evaluation import bootstrap_intervals
    from {{ cookiecutter.package_name }}.settings import SyntheticConfig

    parts = temporal_split(
        generate(SyntheticConfig(n_users=400, n_items=200, n_interactions=8_000), seed=2), 0.2
    )
    result = evaluate(
        build_model(ModelConfig(name="ease")).fit(parts.train, 0), parts.train, parts.test, ks=[10]
    )
    intervals = bootstrap_intervals(result, n_resamples=500, seed=1)
    assert set(intervals) >= {"ndcg@10", "recall@10", "map@10", "mrr@10", "novelty@10", "coverage@10"}
    for name, (low, high) in intervals.items():
        assert low <= result.summary[name] <= high, name
        assert low < high, name
    assert bootstrap_intervals(result, n_resamples=500, seed=1) == intervals


def test_paired_test_separates_a_better_model_from_an_equal_one() -> None:
    from {{ cookiecutter.package_name }}.data.split import temporal_split
    from {{ cookiecutter.package_name }}.data.synthetic import generate
    from {{ cookiecutter.package_name }}.evaluation import paired_test
    from {{ cookiecutter.package_name }}.settings import SyntheticConfig

    parts = temporal_split(
        generate(SyntheticConfig(n_users=600, n_items=300, n_interactions=15_000), seed=3), 0.2
    )
    runs = {
        name: evaluate(
            build_model(ModelConfig(name=name)).fit(parts.train, 0), parts.train, parts.test, ks=[10]
        )
        for name in ("ease", "popularity")
    }
    better = paired_test(runs["ease"], runs["popularity"], "ndcg@10")
    assert better.difference > 0 and better.p_value < 0.01 and better.interval[0] > 0
    assert better.users == runs["ease"].per_user.height
    same = paired_test(runs["ease"], runs["ease"], "ndcg@10")
    assert same.difference == 0 and same.p_value == 1.0
