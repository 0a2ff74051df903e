"""Shared helpers for the template's tests: the template's choices, baking, and the rendered file set."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.environment import StrictEnvironment
from jinja2 import BytecodeCache, Environment
from jinja2.bccache import Bucket

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = ROOT / "{{cookiecutter.project_slug}}"
CONTEXT = json.loads((ROOT / "cookiecutter.json").read_text())
CHOICES: dict[str, list[str]] = {k: v for k, v in CONTEXT.items() if isinstance(v, list)}
ML100K = Path(os.environ.get("ML100K_DIR", ROOT.parent / "shared" / "datasets" / "ml-100k"))
_IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def answer_sets() -> list[dict[str, str]]:
    """Combinations of choice answers: all when REPRO_RECSYS_FULL_MATRIX=1, otherwise a covering subset.

    The subset takes the i-th value of every choice (wrapping), so every value of every choice is baked once.
    """
    if os.environ.get("REPRO_RECSYS_FULL_MATRIX") == "1":
        combos = itertools.product(*CHOICES.values())
        return [dict(zip(CHOICES, combo, strict=True)) for combo in combos]
    width = max(len(values) for values in CHOICES.values())
    return [{key: values[i % len(values)] for key, values in CHOICES.items()} for i in range(width)]


def answer_id(answers: dict[str, str]) -> str:
    return "-".join(answers[k] for k in CHOICES)


def bake(cookies: Any, **answers: str) -> Path:
    """Bake with these answers (defaults elsewhere); fail the test with the hook's error if it does not."""
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, f"bake failed: {result.exception!r}"
    assert result.project_path is not None
    return Path(result.project_path)


def expected_files(context: dict[str, Any]) -> set[str]:
    """Every template file with its name rendered, minus what post_gen_project prunes for these answers, plus
    the `.cruft.json` it writes."""
    env = Environment(keep_trailing_newline=True)
    files = {".cruft.json"}
    for path in TEMPLATE_DIR.rglob("*"):
        relative = path.relative_to(TEMPLATE_DIR)
        if path.is_dir() or _IGNORED_DIRS & set(relative.parts):
            continue
        files.add(env.from_string(relative.as_posix()).render(cookiecutter=context))
    if context["license"] == "none":
        files.discard("LICENSE")
    if context["ci"] == "none":
        files = {f for f in files if not f.startswith(".github/")}
    return files


def baked_files(project: Path) -> set[str]:
    return {
        p.relative_to(project).as_posix()
        for p in project.rglob("*")
        if p.is_file() and not _IGNORED_DIRS & set(p.relative_to(project).parts)
    }


@pytest.fixture(scope="session")
def ml100k_dir() -> Path | None:
    return ML100K if (ML100K / "u.data").is_file() else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The baked projects' suites first: under `make test`'s three processes two start one each at once, and
    the quick tests fill in beside them (`--dist loadgroup` hands tests out one at a time, in this order)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


class _CompiledTemplates(BytecodeCache):
    """Jinja's compiled code of each template file, kept in memory for the rest of the test process.

    A bake spends half its time compiling the template's files to Python (0.5 s of 1 s, profiled), and the
    option matrix bakes over a hundred times: kept, the quick tests take 84 CPU-s instead of 109. Jinja
    checks each kept entry against its file's source before it uses it (a changed file is compiled again),
    and the code depends on the source alone, so the files rendered are the same bytes a user's bake writes.
    """

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if bucket.key in self._code:
            bucket.bytecode_from_string(self._code[bucket.key])

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


@pytest.fixture(scope="session", autouse=True)
def _compile_templates_once() -> Iterator[None]:
    """Every bake of this test process (cookiecutter makes a new Jinja environment each time) shares one
    `_CompiledTemplates`."""
    compiled = _CompiledTemplates()
    original = StrictEnvironment.__init__

    def init(self: StrictEnvironment, **kwargs: Any) -> None:
        original(self, **kwargs)
        self.bytecode_cache = compiled

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StrictEnvironment, "__init__", init)
        yield
