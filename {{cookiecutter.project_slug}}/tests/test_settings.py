from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    ConfigFileError,
    Settings,
    dotted_overrides,
    load_settings,
    settings_for_flow,
)

pytestmark = pytest.mark.unit

_CHOSEN = {"model": {"name"}, "storage": True}  # answers given when the project was generated
DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def test_default_yaml_matches_code_defaults_except_generated_answers() -> None:
    from_yaml = load_settings([DEFAULT])
    assert from_yaml.model_dump(exclude=_CHOSEN) == Settings().model_dump(exclude=_CHOSEN)


def test_later_yaml_overrides_earlier_and_keeps_siblings(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("model:\n  ease:\n    l2: 10\nsplit:\n  strategy: random\n")
    s = load_settings([DEFAULT, exp])
    assert s.model.ease.l2 == 10
    assert s.model.ease.batch_size == load_settings([DEFAULT]).model.ease.batch_size
    assert s.split.strategy == "random"


def test_precedence_overrides_over_env_over_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("seed: 1\nmodel:\n  ease:\n    l2: 10\n    batch_size: 7\n")
    monkeypatch.setenv(f"{ENV_PREFIX}SEED", "2")
    monkeypatch.setenv(f"{ENV_PREFIX}MODEL__EASE__L2", "20")
    s = load_settings([exp], {"model": {"ease": {"l2": 30}}})
    assert (s.seed, s.model.ease.l2, s.model.ease.batch_size) == (2, 30, 7)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="nope.yaml"):
        load_settings([tmp_path / "nope.yaml"])


def test_unknown_keys_and_bad_values_are_rejected() -> None:
    with pytest.raises(ValidationError, match="bogus"):
        load_settings([DEFAULT], {"model": {"bogus": 1}})
    with pytest.raises(ValidationError, match="data.path is required"):
        load_settings([DEFAULT], {"data": {"source": "movielens"}})
    with pytest.raises(ValidationError):
        load_settings([DEFAULT], {"split": {"test_fraction": 1.5}})


def test_fingerprint_is_stable_and_sensitive() -> None:
    a, b = load_settings([DEFAULT]), load_settings([DEFAULT])
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    assert load_settings([DEFAULT], {"seed": 7}).fingerprint() != a.fingerprint()
    assert load_settings([DEFAULT], {"model": {"ease": {"l2": 1.0}}}).fingerprint() != a.fingerprint()
    # Where outputs go does not change what is computed.
    assert load_settings([DEFAULT], {"storage": {"uri": "elsewhere"}}).fingerprint() == a.fingerprint()


def test_resolved_round_trip_ignores_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings([DEFAULT], {"seed": 11})
    monkeypatch.setenv(f"{ENV_PREFIX}SEED", "99")
    assert Settings.from_resolved(s.resolved()) == s


def test_secrets_never_appear_in_resolved_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}STORAGE__SECRET_ACCESS_KEY", "hunter2")
    s = load_settings([DEFAULT])
    assert s.storage.secret_access_key is not None
    assert s.storage.secret_access_key.get_secret_value() == "hunter2"
    assert "hunter2" not in str(s.resolved())


def test_updated_lays_nested_overrides_over_and_keeps_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}STORAGE__SECRET_ACCESS_KEY", "hunter2")
    s = load_settings([DEFAULT])
    drifted = s.updated(s.deploy.drift_overrides)
    assert drifted.split.test_fraction == 0.1 and drifted.split.strategy == s.split.strategy
    assert drifted.storage.secret_access_key.get_secret_value() == "hunter2"
    assert drifted.fingerprint() != s.fingerprint()
    with pytest.raises(ValidationError, match="test_fraction"):
        s.updated({"split": {"test_fraction": 2}})


def test_dotted_overrides_parse_values() -> None:
    assert dotted_overrides(["model.ease.l2=5", "seed=3", "data.source=file"]) == {
        "model": {"ease": {"l2": 5}},
        "seed": 3,
        "data": {"source": "file"},
    }
    with pytest.raises(ValueError, match="section.field=value"):
        dotted_overrides(["nonsense"])


def test_flows_take_resolved_settings_or_config_files(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("seed: 5\n")
    settings = load_settings([DEFAULT, exp])
    assert settings_for_flow(settings.resolved(), None) == settings
    assert settings_for_flow(None, [str(DEFAULT), str(exp)]) == settings
    with pytest.raises(ValueError, match="`config` \\(resolved settings\\) or `config_files`, not both"):
        settings_for_flow(settings.resolved(), [str(exp)])


def test_an_explicit_empty_mapping_or_list_replaces_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`promotion.guards: {}` means no guards (as the README says): from a file, `--set` or the env."""
    assert load_settings([DEFAULT]).promotion.guards  # a guard by default
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "promotion:\n  guards: {}\nmodel:\n  ease:\n    l2_search: []\ndeploy:\n  drift_overrides: {}\n"
    )
    s = load_settings([DEFAULT, exp])
    assert (s.promotion.guards, s.model.ease.l2_search, s.deploy.drift_overrides) == ({}, [], {})
    assert s.promotion.margin == load_settings([DEFAULT]).promotion.margin  # siblings kept
    assert load_settings([DEFAULT], dotted_overrides(["promotion.guards={}"])).promotion.guards == {}
    monkeypatch.setenv(f"{ENV_PREFIX}PROMOTION__GUARDS", "{}")
    assert load_settings([DEFAULT]).promotion.guards == {}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["evaluation.k=[0]"], r"evaluation\.k\.0\n.*greater than 0"),
        (["evaluation.k=[-5]"], r"evaluation\.k\.0\n.*greater than 0"),
        (["evaluation.primary_metric=ndgc@10"], r"evaluation\.primary_metric: 'ndgc@10' is not a metric"),
        (["evaluation.k=[5]"], r"evaluation\.primary_metric: 'ndcg@10' is not a metric .*k=\[5\]"),
        (["promotion.guards={recall@50: 0.1}"], r"promotion\.guards: 'recall@50' is not a metric"),
        (["promotion.guards={users: 1}"], r"promotion\.guards: 'users' is not a metric"),
    ],
)
def test_metric_names_and_k_are_checked_when_loaded(overrides: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_settings([DEFAULT], dotted_overrides(overrides))


def test_metric_names_settings_accept_are_what_evaluation_computes() -> None:
    from {{ cookiecutter.package_name }}.data.split import split
    from {{ cookiecutter.package_name }}.data.synthetic import generate
    from {{ cookiecutter.package_name }}.evaluation import evaluate
    from {{ cookiecutter.package_name }}.models import build_model
    from {{ cookiecutter.package_name }}.settings import ModelConfig, SplitConfig, SyntheticConfig

    evaluation = {"k": [3, 7], "primary_metric": "mrr@7"}
    s = load_settings([DEFAULT], {"evaluation": evaluation, "promotion": {"guards": {}}})
    parts = split(generate(SyntheticConfig(n_users=100, n_items=60, n_interactions=900), 0), SplitConfig(), 0)
    model = build_model(ModelConfig(name="popularity")).fit(parts.train, 0)
    summary = evaluate(model, parts.train, parts.test, s.evaluation.k).summary
    assert sorted(s.evaluation.metrics()) == sorted(set(summary) - {"users", "users_skipped"})
