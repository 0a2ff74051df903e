"""How the sources are laid over each other: the YAML files, the environment and the overrides, lowest first,
merged mapping by mapping (an explicit empty mapping replaces what lies below it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

# Set only while `load_settings` builds an object, so the YAML files are an argument, not global state.
_YAML_LAYERS: ContextVar[tuple[dict[str, Any], ...]] = ContextVar("_YAML_LAYERS", default=())


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `update` laid over it, section by section; an empty mapping in `update` replaces."""
    out = dict(base)
    for key, value in update.items():
        nested = isinstance(value, Mapping) and value and isinstance(out.get(key), Mapping)
        out[key] = deep_merge(out[key], value) if nested else value
    return out


class _Layers(PydanticBaseSettingsSource):
    """The sources (the YAML files as read by `_read_yaml`), lowest first, laid over each other by
    `deep_merge`. pydantic-settings' own merge keeps what lies below an empty mapping, so
    `promotion.guards: {}` could never clear the default guards."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        layers: Sequence[Mapping[str, Any] | PydanticBaseSettingsSource],
    ) -> None:
        super().__init__(settings_cls)
        self.layers = layers

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns every value at once

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for layer in self.layers:
            out = deep_merge(out, layer if isinstance(layer, Mapping) else layer())
        return out
