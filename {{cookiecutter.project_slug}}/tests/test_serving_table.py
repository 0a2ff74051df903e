"""`recommend --user` from the serving refit's stored top table gives what the model ranks: for every user,
every model and any k up to the table's depth, the same items in the same ranks as the model ranking that user
alone (as `recommend --user` did), and the same scores bit for bit as the model ranking users in batches (as
`recommend --all` and evaluation do). iALS and BPR score a batch of one by a matrix-vector product whose sums
run in another order than a batch's: those scores differ from the batch's in the last bit of a float32, which
the test allows there and nowhere else. Where the table cannot answer (no table, k deeper than it, a user it
has no rows for) the lookup says None and the model ranks.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from {{ cookiecutter.package_name }}.artifacts import ArtifactStore, open_store
from {{ cookiecutter.package_name }}.artifacts.registry import ModelVersion
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.models import MODELS, Recommender, build_model
from {{ cookiecutter.package_name }}.serving import (
    recommend_all,
    recommend_users,
    stored_recommendations,
    top_depth,
)
from {{ cookiecutter.package_name }}.settings import ModelConfig, StorageConfig, SyntheticConfig

pytestmark = pytest.mark.unit

DATA = SyntheticConfig(n_users=300, n_items=200, n_interactions=6_000)


@pytest.fixture(scope="module")
def interactions() -> pl.DataFrame:
    return generate(DATA, seed=0)


def _served(name: str, frame: pl.DataFrame, tmp: Path) -> tuple[Recommender, ModelVersion, ArtifactStore]:
    """A fitted model as `recommend` loads it (saved and loaded), and a version whose serving entry holds the
    top table `refit_for_serving` stores for it."""
    fitted = build_model(ModelConfig(name=name)).fit(frame, seed=0)
    fitted.save(tmp / "model.safetensors")
    model = Recommender.load(tmp / "model.safetensors")
    store = open_store(StorageConfig(uri=str(tmp / "artifacts")))
    depth = top_depth(fitted.n_users)
    top = store.put_frame(recommend_all(fitted, depth), kind="serving-top")
    # Only `serving` is read by the lookup; the rest names nothing in this store.
    version = ModelVersion(
        version=1,
        dataset="synthetic",
        run_id="run",
        created_at="2026-01-01T00:00:00+00:00",
        created_by="test",
        model_name=name,
        model_id="model",
        model_uri="model",
        snapshot_id="snapshot",
        manifest_id="manifest",
        manifest_uri="manifest",
        config_fingerprint="config",
        metrics={},
        artifacts={},
        serving={"top": top.model_dump(), "top_k": depth},
    )
    return model, version, store


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_top_table_serves_every_user_what_the_model_ranks_for_them_alone(
    name: str, interactions: pl.DataFrame, tmp_path: Path
) -> None:
    model, version, store = _served(name, interactions, tmp_path)
    assert model.vocabulary is not None
    users = model.vocabulary.users.tolist()
    depth = version.serving["top_k"]  # type: ignore[index]
    assert depth == 100
    for k in (1, 10, depth):
        stored = stored_recommendations(store, version, users, k)
        assert stored is not None
        assert_frame_equal(stored, recommend_users(model, users, k)[0], check_exact=True)
        # One user per call, as `recommend --user ID` ranked them before the table.
        alone = pl.concat([recommend_users(model, [u], k)[0] for u in users])
        assert_frame_equal(stored.drop("score"), alone.drop("score"), check_exact=True)
        exact = name not in ("ials", "bpr")
        assert_frame_equal(stored, alone, check_exact=exact, rel_tol=0, abs_tol=0 if exact else 2e-6)
    # Users in any order, one repeated: the model's own order and repetition.
    asked = [users[5], users[0], users[5], users[-1]]
    assert_frame_equal(
        stored_recommendations(store, version, asked, 10),  # type: ignore[arg-type]
        recommend_users(model, asked, 10)[0],
        check_exact=True,
    )


def test_the_model_ranks_where_the_table_cannot_answer(interactions: pl.DataFrame, tmp_path: Path) -> None:
    model, version, store = _served("ease", interactions, tmp_path)
    assert model.vocabulary is not None
    known = int(model.vocabulary.users[0])
    unknown = int(model.vocabulary.users.max()) + 1  # gets the popularity fallback from the model
    assert stored_recommendations(store, version, [known], 10) is not None
    assert stored_recommendations(store, version, [known, unknown], 10) is None
    assert stored_recommendations(store, version, [known], 101) is None  # deeper than the table
    assert stored_recommendations(store, replace(version, serving=None), [known], 10) is None
    old_refit = {key: value for key, value in version.serving.items() if key != "top"}  # type: ignore[union-attr]
    assert stored_recommendations(store, replace(version, serving=old_refit), [known], 10) is None


def test_the_table_keeps_about_a_million_rows() -> None:
    assert [top_depth(n) for n in (943, 6_040, 20_000, 200_000, 10_000_000)] == [100, 100, 50, 10, 10]
