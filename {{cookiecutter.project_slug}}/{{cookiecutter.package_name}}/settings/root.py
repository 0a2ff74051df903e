"""The settings root: every section, the order of its sources, and what is derived from it (the resolved
values for manifests, the secrets as environment variables, the experiment's fingerprint)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ..canonical import canonical_json
from .base import ENV_PREFIX
from .data import DataConfig, IngestConfig, SplitConfig, ValidationConfig
from .evaluation import EvaluationConfig, MonitorConfig, PromotionConfig, _check_evaluated
from .layers import _YAML_LAYERS, _Layers, deep_merge
from .storage import DeployConfig, RegistryConfig, StorageConfig
from .training import ModelConfig, SweepConfig, TrainingConfig


class Settings(BaseSettings):
    """All the settings, one section per concern; frozen, built once at the entry point (`load_settings`)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    seed: int = 42
    tags: dict[str, str] = Field(default_factory=dict)
    data: DataConfig = DataConfig()
    validation: ValidationConfig = ValidationConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    storage: StorageConfig = StorageConfig()
    registry: RegistryConfig = RegistryConfig()
    promotion: PromotionConfig = PromotionConfig()
    monitor: MonitorConfig = MonitorConfig()
    deploy: DeployConfig = DeployConfig()
    ingest: IngestConfig = IngestConfig()
    sweep: SweepConfig = SweepConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Replace pydantic-settings' sources by one that merges the layers our way (see `layers.py`)."""
        return (_Layers(settings_cls, [*_YAML_LAYERS.get(), env_settings, init_settings]),)

    @model_validator(mode="after")
    def _guards_are_evaluated(self) -> Settings:
        _check_evaluated("promotion.guards", list(self.promotion.guards), self.evaluation)
        return self

    def resolved(self) -> dict[str, Any]:
        """Every value as plain JSON, secrets masked: what goes into reports and manifests."""
        return self.model_dump(mode="json")

    def secret_environment(self) -> dict[str, str]:
        """The secrets `resolved()` leaves out, as the environment variables that bring them back.

        Flows rebuild their settings from `resolved()` and the environment (`settings_for_flow`): an entry
        point that read a secret from a file or an option sets these for its own process (and the processes
        it starts), so in-process flows see the secret while no flow-run parameter holds it.
        """
        found = {
            "REGISTRY__PASSWORD": self.registry.password,
            "STORAGE__ACCESS_KEY_ID": self.storage.access_key_id,
            "STORAGE__SECRET_ACCESS_KEY": self.storage.secret_access_key,
        }
        out = {f"{ENV_PREFIX}{name}": value.get_secret_value() for name, value in found.items() if value}
        if self.registry.secret_query:
            query = {k: v.get_secret_value() for k, v in self.registry.secret_query.items()}
            out[f"{ENV_PREFIX}REGISTRY__SECRET_QUERY"] = json.dumps(query)
        return out

    def fingerprint(self) -> str:
        """sha256 of the resolved config minus where things live and what happens around training (storage,
        landing, registry, promotion, monitoring, deployments, sweeps, progress and checkpoints, the dataset's
        name and its titles): the experiment, wherever it runs."""
        payload = self.model_dump(
            mode="json",
            exclude={
                "storage": True,
                "ingest": True,
                "training": True,
                "registry": True,
                "promotion": True,
                "monitor": True,
                "deploy": True,
                "sweep": True,
                "data": {"name", "items"},
            },
        )
        return hashlib.sha256(canonical_json(payload)).hexdigest()

    @classmethod
    def from_resolved(cls, resolved: Mapping[str, Any]) -> Settings:
        """Rebuild from `resolved()` output; the values passed are complete, so they win over every source."""
        return cls(**resolved)

    def updated(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with nested `overrides` applied (validated; secrets kept)."""
        return type(self).from_resolved(deep_merge(self.model_dump(), overrides))
