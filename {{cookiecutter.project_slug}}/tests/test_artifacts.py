from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from {{ cookiecutter.package_name }}.artifacts import ArtifactCorrupted, ArtifactStore

pytestmark = pytest.mark.unit


def test_ids_are_content_hashes_and_puts_are_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    frame = pl.DataFrame({"user_id": [1, 2], "item_id": [3, 4]})
    a = store.put_frame(frame, kind="snapshot")
    b = store.put_frame(frame.clone(), kind="snapshot")
    assert a == b and len(a.id) == 64
    assert store.get_frame(a).equals(frame)
    assert store.put_frame(frame.with_columns(pl.col("item_id") + 1), kind="snapshot").id != a.id
    objects = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(objects) == 2 and not any(p.name.startswith(".tmp-") for p in objects)


def test_json_is_canonical(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    assert store.put_json({"b": 1, "a": 2}, "m").id == store.put_json({"a": 2, "b": 1}, "m").id


def test_corruption_is_detected(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.put_bytes(b"weights", kind="model")
    (tmp_path / ref.uri).write_bytes(b"tampered")  # the reference's path inside the store
    with pytest.raises(ArtifactCorrupted, match=ref.id):
        store.get_bytes(ref)


def test_named_outputs_stay_inside_the_store(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    uri = store.write_text("runs/abc/report.md", "# hi")
    assert uri.endswith("/store/runs/abc/report.md") and store.read_text("runs/abc/report.md") == "# hi"
    assert store.list("runs") == ["abc"]
    with pytest.raises(ValueError, match="inside the store"):
        store.write_text("../escape.md", "x")
