"""Item titles: MovieLens' item files in each of their layouts, a `data.items` file by header names or by
positions with a separator of several characters, errors that name the setting, and serving's popularity
fallback for users a model does not know."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from {{ cookiecutter.package_name }}.catalogue import CatalogueError, item_titles, with_titles
from {{ cookiecutter.package_name }}.models import build_model
from {{ cookiecutter.package_name }}.serving import most_popular, recommend_users
from {{ cookiecutter.package_name }}.settings import DataConfig, ItemsConfig, ModelConfig

pytestmark = pytest.mark.unit


def _movielens(directory: Path, name: str, text: str, encoding: str = "utf-8") -> DataConfig:
    directory.mkdir()
    (directory / "ratings.dat").write_text("1::1::5::978300760\n")
    (directory / name).write_bytes(text.encode(encoding))
    return DataConfig(source="movielens", path=directory)


def test_movielens_item_files_beside_the_ratings(tmp_path: Path) -> None:
    u_item = (
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0\n2|Céline et Julie (1974)|01-Jan-1974||http://y|0|1\n"
    )
    found = item_titles(_movielens(tmp_path / "ml-100k", "u.item", u_item, encoding="latin-1"))
    assert found is not None and found.rows() == [(1, "Toy Story (1995)"), (2, "Céline et Julie (1974)")]

    movies_dat = '1::Toy Story (1995)::Animation|Comedy\n2::"Jumanji: The Game" (1995)::Adventure\n'
    found = item_titles(_movielens(tmp_path / "ml-1m", "movies.dat", movies_dat, encoding="latin-1"))
    assert found is not None and found.get_column("title").to_list()[1] == '"Jumanji: The Game" (1995)'

    movies_csv = (
        'movieId,title,genres\n1,Toy Story (1995),Animation\n11,"American President, The (1995)",Drama\n'
    )
    found = item_titles(_movielens(tmp_path / "ml-latest", "movies.csv", movies_csv))
    assert found is not None and found.rows() == [
        (1, "Toy Story (1995)"),
        (11, "American President, The (1995)"),
    ]

    # A MovieLens directory without an item file, and synthetic data: no titles, ids only.
    assert item_titles(_movielens(tmp_path / "bare", "README", "")) is None
    assert item_titles(DataConfig()) is None


def test_a_data_items_file_by_names_or_by_positions(tmp_path: Path) -> None:
    named = tmp_path / "items.csv"
    named.write_text("title;genre;sku\nLamp;home;7\nChair;home;3\nLamp again;home;7\n")
    cfg = DataConfig(items=ItemsConfig(path=named, id="sku", title="title", csv_separator=";"))
    found = item_titles(cfg)
    assert found is not None and found.rows() == [(7, "Lamp"), (3, "Chair")]  # the first title of an id

    positional = tmp_path / "items.dat"
    positional.write_text("7::Lamp::home\n3::Chair::home\n")
    cfg = DataConfig(items=ItemsConfig(path=positional, id=0, title=1, csv_separator="::", has_header=False))
    found = item_titles(cfg)
    assert found is not None and found.rows() == [(7, "Lamp"), (3, "Chair")]

    parquet = tmp_path / "items.parquet"
    pl.DataFrame({"item_id": [3, 7], "title": ["Chair", "Lamp"]}).write_parquet(parquet)
    found = item_titles(DataConfig(items=ItemsConfig(path=parquet)))
    recs = pl.DataFrame({"user_id": [1, 1, 1], "item_id": [7, 9, 3], "rank": [1, 2, 3]})
    assert with_titles(recs, found).get_column("title").to_list() == ["Lamp", None, "Chair"]
    assert with_titles(recs, None).columns == recs.columns


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (ItemsConfig(path=Path("nowhere.csv")), "data.items.path: nowhere.csv is not a file"),
        (ItemsConfig(path=Path("{file}"), title="name"), "data.items.title: no column 'name'; the file has"),
        (ItemsConfig(path=Path("{file}"), id=5), "data.items.id: position 5, but the file has 2 columns"),
        (ItemsConfig(path=Path("{file}"), id="title", title="item_id"), "data.items.id: 'Lamp' is not an"),
    ],
)
def test_a_catalogue_that_cannot_be_read_names_the_setting(
    tmp_path: Path, items: ItemsConfig, message: str
) -> None:
    file = tmp_path / "items.csv"
    file.write_text("item_id,title\n7,Lamp\n")
    if items.path == Path("{file}"):
        items = items.model_copy(update={"path": file})
    with pytest.raises(CatalogueError, match=message.replace("(", r"\(")):
        item_titles(DataConfig(items=items))


def test_unknown_users_get_the_most_popular_items_of_the_training_data() -> None:
    events = pl.DataFrame(
        {"user_id": [1, 1, 2, 2, 3, 3, 3], "item_id": [10, 20, 20, 30, 20, 30, 40]},
        schema={"user_id": pl.Int64, "item_id": pl.Int64},
    )
    model = build_model(ModelConfig(name="itemknn")).fit(events, seed=0)
    assert most_popular(model, 3).get_column("item_id").to_list() == [20, 30, 10]  # ties by item id
    recs, unknown = recommend_users(model, [99, 1, 99], 2)
    assert unknown == [99]
    assert recs.filter(pl.col("user_id") == 99).get_column("item_id").to_list() == [20, 30]
    assert recs.get_column("user_id").to_list()[:2] == [99, 99]  # in the order asked
    assert not set(recs.filter(pl.col("user_id") == 1).get_column("item_id").to_list()) & {10, 20}
