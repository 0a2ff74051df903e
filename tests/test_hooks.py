"""The pre-generation hook refuses names that would give a broken project, and says why."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"project_name": "123 Bad"}, "project_slug '123-bad' is not a valid project name"),
        ({"project_slug": "My_Project"}, "project_slug 'My_Project' is not a valid project name"),
        ({"package_name": "class"}, "package_name 'class' is a Python keyword"),
        ({"package_name": "my-pkg"}, "package_name 'my-pkg' is not a valid Python identifier"),
        ({"package_name": "json"}, "package_name 'json' would shadow"),
        ({"package_name": "torch"}, "package_name 'torch' would shadow"),
        ({"package_name": "MyPkg"}, "must be lowercase"),
    ],
)
def test_bad_names_are_refused(cookies, capfd, answers: dict[str, str], message: str) -> None:
    result = cookies.bake(extra_context=answers)
    assert result.exit_code != 0
    assert result.project_path is None or not result.project_path.exists()
    assert message in capfd.readouterr().err


def test_a_good_custom_package_name_is_accepted(cookies) -> None:
    result = cookies.bake(extra_context={"project_name": "Shop Recs", "package_name": "shoprecs"})
    assert result.exit_code == 0, result.exception
    assert (result.project_path / "shoprecs" / "settings" / "__init__.py").is_file()
