"""The contract every recommender passes, on a tiny synthetic matrix with non-contiguous raw ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from {{ cookiecutter.package_name }}.models import MODELS, Recommender, build_model
from {{ cookiecutter.package_name }}.settings import BPRConfig, ModelConfig

pytestmark = pytest.mark.unit

USERS = [10, 500, 7, 42, 99, 3]
ITEMS = [1000, 20, 333, 4, 58, 71, 860]


@pytest.fixture(scope="module")
def interactions() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    pairs = {(u, i) for u in USERS for i in ITEMS if rng.random() < 0.45}
    pairs |= {(u, ITEMS[0]) for u in USERS}  # every user has at least one item
    rows = sorted(pairs)
    return pl.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "item_id": [i for _, i in rows],
            "timestamp": list(range(len(rows))),
        }
    )


def _cfg(name: str) -> ModelConfig:
    return ModelConfig(name=name, bpr=BPRConfig(epochs=3, factors=4, batch_size=8))


def _fit(name: str, frame: pl.DataFrame, seed: int = 0) -> Recommender:
    return build_model(_cfg(name)).fit(frame, seed)


@pytest.fixture(params=sorted(MODELS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_vocabulary_maps_raw_ids(name: str, interactions: pl.DataFrame) -> None:
    model = _fit(name, interactions)
    vocab = model.vocabulary
    assert vocab is not None
    assert vocab.users.tolist() == sorted(USERS) and vocab.items.tolist() == sorted(ITEMS)
    assert vocab.user_index([7, 500, 12345]).tolist() == [1, 5, -1]
    assert vocab.item_index([4, 1000, -1]).tolist() == [0, 6, -1]


def test_recommend_excludes_seen_items_only_when_asked(name: str, interactions: pl.DataFrame) -> None:
    model = _fit(name, interactions)
    seen = set(interactions.select("user_id", "item_id").iter_rows())
    recs = model.recommend(USERS, k=3)
    assert recs.columns == ["user_id", "item_id", "score", "rank"]
    assert not any(pair in seen for pair in recs.select("user_id", "item_id").iter_rows())
    for _, group in recs.group_by("user_id"):
        assert group.get_column("rank").to_list() == list(range(1, group.height + 1))
        assert group.get_column("score").is_sorted(descending=True)
    everything = model.recommend(USERS, k=len(ITEMS), exclude_seen=False)
    assert everything.height == len(USERS) * len(ITEMS)
    assert model.recommend([123456], k=3).height == 0  # unknown users get nothing, not an error


def test_top_lists_are_nested(name: str, interactions: pl.DataFrame) -> None:
    # Ties must not reshuffle with k: the top 2 is the start of the top 5 (and of the full ranking).
    model = _fit(name, interactions)
    full = model.recommend(USERS, k=len(ITEMS), exclude_seen=False)
    for k in (1, 2, 5):
        assert model.recommend(USERS, k=k, exclude_seen=False).equals(full.filter(pl.col("rank") <= k))


def test_popularity_ties_rank_by_raw_item_id() -> None:
    # Items 900, 30 and 5 each have one user, item 60 has two: ranking 60, then 5, 30, 900.
    frame = pl.DataFrame({"user_id": [1, 2, 1, 3, 4], "item_id": [60, 60, 900, 30, 5], "timestamp": [0] * 5})
    model = _fit("popularity", frame)
    for k in (1, 2, 3, 4):
        got = model.recommend([1], k=k, exclude_seen=False).get_column("item_id").to_list()
        assert got == [60, 5, 30, 900][:k]
    assert model.recommend([1], k=2).get_column("item_id").to_list() == [5, 30]


def test_top_k_orders_ties_by_index_and_rejects_nan() -> None:
    from {{ cookiecutter.package_name }}.models.base import top_k

    scores = torch.randint(0, 3, (50, 40), generator=torch.Generator().manual_seed(0)).to(torch.float32)
    scores[scores == 0] = float("-inf")
    expected = torch.sort(scores, dim=1, descending=True, stable=True)
    for k in (1, 7, 40, 100):
        values, indices = top_k(scores, k)
        assert torch.equal(indices, expected.indices[:, :k]) and torch.equal(values, expected.values[:, :k])
    with pytest.raises(ValueError, match="NaN"):
        top_k(torch.tensor([[1.0, float("nan"), 0.0]]), 1)


def test_save_load_round_trip_is_exact(name: str, interactions: pl.DataFrame, tmp_path: Path) -> None:
    model = _fit(name, interactions)
    model.save(tmp_path / "a.safetensors")
    loaded = Recommender.load(tmp_path / "a.safetensors")
    assert type(loaded) is type(model) and loaded.config == model.config
    users = torch.arange(len(USERS))
    assert torch.equal(loaded.score(users), model.score(users))
    assert loaded.recommend(USERS, k=3).equals(model.recommend(USERS, k=3))
    loaded.save(tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_same_seed_same_scores(name: str, interactions: pl.DataFrame, tmp_path: Path) -> None:
    a, b = _fit(name, interactions, seed=1), _fit(name, interactions, seed=1)
    a.save(tmp_path / "a.safetensors")
    b.save(tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_duplicate_events_count_once(name: str, interactions: pl.DataFrame) -> None:
    doubled = pl.concat([interactions, interactions])
    users = torch.arange(len(USERS))
    assert torch.allclose(_fit(name, doubled).score(users), _fit(name, interactions).score(users))


def test_bpr_seed_changes_weights(interactions: pl.DataFrame) -> None:
    users = torch.arange(len(USERS))
    assert not torch.equal(
        _fit("bpr", interactions, 1).score(users), _fit("bpr", interactions, 2).score(users)
    )


def test_bpr_loss_decreases(interactions: pl.DataFrame) -> None:
    model = build_model(ModelConfig(name="bpr", bpr=BPRConfig(epochs=30, factors=8, batch_size=8))).fit(
        interactions, 0
    )
    losses = [record["loss"] for record in model.epochs]
    assert len(losses) == 30 and losses[-1] < losses[0]
    assert [record["epoch"] for record in model.epochs] == list(range(1, 31))


def test_ials_loss_decreases_and_epochs_survive_save_load(interactions: pl.DataFrame, tmp_path: Path) -> None:
    model = build_model(ModelConfig(name="ials", ials={"iterations": 5, "factors": 4})).fit(interactions, 0)
    losses = [record["loss"] for record in model.epochs]
    assert len(losses) == 5 and all(b <= a * (1 + 1e-6) for a, b in zip(losses, losses[1:], strict=False))
    model.save(tmp_path / "m.safetensors")
    assert Recommender.load(tmp_path / "m.safetensors").epochs == model.epochs


def test_ials_solves_are_the_normal_equations(interactions: pl.DataFrame) -> None:
    # With twice as many CG steps as factors each solve is exact, so the last half-iteration's item factors
    # solve the item side's weighted least squares for the final user factors (checked in float64, densely).
    cfg = ModelConfig(
        name="ials", ials={"iterations": 2, "factors": 4, "cg_steps": 8, "regularization": 1.0, "alpha": 10.0}
    )
    model = build_model(cfg).fit(interactions, 0)
    x, y = model.user_factors.double(), model.item_factors.double()
    seen = model.interactions(torch.arange(model.n_users)).double()
    for item in range(model.n_items):
        x_item = x[seen[:, item] > 0]
        system = x.T @ x + 1.0 * torch.eye(4, dtype=torch.float64) + 10.0 * x_item.T @ x_item
        expected = torch.linalg.solve(system, 11.0 * x_item.sum(0))
        assert torch.allclose(y[item], expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("model_name", ["ials", "bpr"])
def test_iterative_models_repeat_bit_for_bit_on_two_threads(model_name: str, tmp_path: Path) -> None:
    # Big enough that the kernels split work across threads (BPR batches of 4,096 triples, iALS's per-row
    # sparse products): the same seed and thread count must still give the same file.
    from {{ cookiecutter.package_name }}.data.synthetic import generate
    from {{ cookiecutter.package_name }}.settings import SyntheticConfig

    frame = generate(SyntheticConfig(n_users=2_000, n_items=500, n_interactions=40_000), seed=3)
    cfg = ModelConfig(name=model_name, bpr=BPRConfig(epochs=2), ials={"iterations": 3})
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for run in ("a", "b"):
            build_model(cfg).fit(frame, seed=7).save(tmp_path / f"{run}.safetensors")
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_exclude_seen_masks_exactly_the_training_items(name: str, interactions: pl.DataFrame) -> None:
    model = _fit(name, interactions)
    users = torch.arange(len(USERS))
    masked = model.exclude_seen(model.score(users), users)
    assert torch.equal(torch.isinf(masked), model.seen(users))
    assert torch.equal(masked[~model.seen(users)], model.score(users)[~model.seen(users)])


def test_training_writes_loadable_checkpoints(interactions: pl.DataFrame, tmp_path: Path) -> None:
    from {{ cookiecutter.package_name }}.settings import TrainingConfig
    from {{ cookiecutter.package_name }}.training import train

    reporting = TrainingConfig(checkpoint_every=2, checkpoint_dir=str(tmp_path), progress_bar=False)
    cfg = ModelConfig(name="bpr", bpr=BPRConfig(epochs=5, factors=4, batch_size=8))
    final = train(cfg, interactions, seed=0, reporting=reporting)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["bpr-epoch-002.safetensors", "bpr-epoch-004.safetensors"]
    resumed = Recommender.load(tmp_path / "bpr-epoch-004.safetensors")
    assert [r["epoch"] for r in resumed.epochs] == [1, 2, 3, 4]
    users = torch.arange(len(USERS))
    # Epoch 4's weights, not the final ones: the checkpoint is a snapshot taken during training.
    assert not torch.equal(resumed.score(users), final.score(users))
    assert torch.isfinite(resumed.score(users)).all()


def test_popularity_counts_distinct_users(interactions: pl.DataFrame) -> None:
    model = _fit("popularity", interactions)
    expected = interactions.group_by("item_id").len().sort("item_id").get_column("len").to_list()
    assert model.score(torch.tensor([0]))[0].tolist() == [float(c) for c in expected]


def test_ease_matches_closed_form() -> None:
    x = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 0]], dtype=np.float64)
    frame = pl.DataFrame(
        {"user_id": np.nonzero(x)[0], "item_id": np.nonzero(x)[1], "timestamp": np.arange(int(x.sum()))}
    )
    model = build_model(ModelConfig(name="ease", ease={"l2": 2.0})).fit(frame, 0)
    p = np.linalg.inv(x.T @ x + 2.0 * np.eye(4))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    assert np.allclose(model.score(torch.arange(5)).numpy(), x @ b, atol=1e-5)


def test_fit_on_empty_frame_is_an_error(name: str, interactions: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="empty"):
        _fit(name, interactions.head(0))


def test_ease_l2_search_picks_the_best_candidate_on_an_inner_split() -> None:
    from {{ cookiecutter.package_name }}.data.synthetic import generate
    from {{ cookiecutter.package_name }}.settings import SyntheticConfig
    from {{ cookiecutter.package_name }}.training import best_ease_l2, train

    frame = generate(SyntheticConfig(n_users=300, n_items=150, n_interactions=6_000), seed=1)
    cfg = ModelConfig(name="ease", ease={"l2": 1.0, "l2_search": [1e-3, 100.0, 1e6]})
    best = best_ease_l2(cfg, frame, seed=0)
    assert best == 100.0  # a vanishing or an overwhelming penalty both rank worse
    assert train(cfg, frame, seed=0).config.l2 == best


def test_bpr_early_stopping_keeps_the_best_epoch(interactions: pl.DataFrame) -> None:
    cfg = ModelConfig(name="bpr", bpr=BPRConfig(epochs=200, factors=4, batch_size=8, patience=2))
    model = build_model(cfg).fit(interactions, 0)
    checks = [record["validation_hr10"] for record in model.epochs]
    assert len(checks) < 200  # stopped before the last epoch
    assert checks.index(max(checks)) == len(checks) - 1 - 2  # the best epoch, then `patience` worse ones
