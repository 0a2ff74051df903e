"""Loading the settings at an entry point: YAML files, the environment and `--set` overrides, and the errors
that name the file, variable or override that cannot be read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic_settings import SettingsError

from .base import ENV_PREFIX
from .layers import _YAML_LAYERS
from .root import Settings


class ConfigError(ValueError):
    """A config file, override or environment variable that cannot be read; the message names it."""


class ConfigFileError(ConfigError):
    """A config file that is missing, unreadable, or not a mapping of settings; the message names the file."""


def load_settings(config_files: Sequence[Path] = (), overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings object from YAML files (in order), the environment and `overrides`."""
    token = _YAML_LAYERS.set(tuple(_read_yaml(Path(f)) for f in config_files))
    try:
        return Settings(**dict(overrides or {}))
    except SettingsError as exc:  # a value in the environment that is not JSON where JSON is expected
        raise ConfigError(_environment_problem(str(exc))) from exc
    finally:
        _YAML_LAYERS.reset(token)


def _read_yaml(path: Path) -> dict[str, Any]:
    """A config file's settings; whatever keeps it from being a mapping of settings is a ConfigFileError."""
    import yaml

    if not path.is_file():
        # A typo must not fall back to the defaults.
        raise ConfigFileError(f"config file not found: {path}")
    try:
        data = _parse_yaml(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"config file {path}: not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"config file {path}: not valid YAML: {_yaml_problem(exc)}") from exc
    if data is None:  # an empty file (or only comments) sets nothing
        return {}
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"the single value {data!r}"
        raise ConfigFileError(f"config file {path}: holds {kind}, not a mapping of settings (section: ...)")
    return data


def _parse_yaml(text: str) -> Any:
    """The document in `text`, read by libyaml where PyYAML was built with it: 1 ms for the project's config
    instead of 13, which every command pays, a cached rerun included. Text it refuses is read again by the
    pure-Python loader, whose error says what it expected and what it found instead."""
    import yaml

    if yaml.__with_libyaml__:
        try:
            return yaml.load(text, Loader=yaml.CSafeLoader)
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def _yaml_problem(exc: Exception) -> str:
    """A YAML error in one line: what is wrong and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _environment_problem(message: str) -> str:
    """Which environment variables a pydantic-settings parse error is about. Their values are not shown:
    one may hold a secret (REGISTRY__SECRET_QUERY is JSON too)."""
    import os

    field = message.split('"')[1] if message.count('"') >= 2 else ""
    prefix = f"{ENV_PREFIX}{field}".upper()
    names = sorted(name for name in os.environ if name.upper().startswith(prefix)) or [f"{prefix}..."]
    return (
        f"environment variable {', '.join(names)}: not valid JSON, which list and mapping settings take "
        f"(e.g. {ENV_PREFIX}EVALUATION__K='[10, 20]')"
    )


def settings_for_flow(config: Mapping[str, Any] | None, config_files: Sequence[str] | None) -> Settings:
    """What a flow runs with: the resolved settings its caller passed, or (for a deployment) its config files
    loaded with the worker's environment (default: configs/default.yaml).

    Two ways on purpose. A command resolves its settings where the user typed them (files, env, `--set`) and
    passes the result, so the flow run's parameters in Prefect show exactly what ran. A deployment cannot: its
    parameters are fixed when it is deployed, and the secrets and paths belong to the machine that runs it, so
    it names files that the worker loads with its own environment. Both at once would leave one ignored:
    refused.
    """
    if config is not None and config_files:
        raise ConfigError("a flow takes `config` (resolved settings) or `config_files`, not both")
    if config is not None:
        return Settings.from_resolved(config)
    return load_settings([Path(f) for f in config_files or ["configs/default.yaml"]])


def dotted_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """Turn CLI `section.field=value` strings into a nested dict (see `override_value` for the values)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{pair}' is not of the form section.field=value")
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{pair}' conflicts with another override of '{part}'")
        try:
            node[leaf] = override_value(raw)
        except ValueError as exc:
            raise ConfigError(f"override '{pair}': {exc}") from exc
    return out


def override_value(raw: str) -> Any:
    """A `--set` value: a YAML scalar (`500`, `true`, `null`), a quoted string or a flow collection (`{}`,
    `[10, 20]`); anything else is the text as written. Separators such as `::`, `|`, `#` or `:` would
    otherwise be read as YAML block syntax, a comment or an error."""
    import yaml

    text = raw.strip()
    if not text and not raw:
        return None  # `--set storage.public_url=`
    if text[:1] in ("{", "[", "'", '"'):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"not a valid YAML value: {_yaml_problem(exc)}") from exc
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return raw
    if isinstance(node, yaml.ScalarNode) and node.style is None and node.tag != "tag:yaml.org,2002:str":
        return yaml.safe_load(text)  # a plain number, boolean or null
    if isinstance(node, yaml.ScalarNode) and node.style is None and node.value == text:
        return text
    return raw
