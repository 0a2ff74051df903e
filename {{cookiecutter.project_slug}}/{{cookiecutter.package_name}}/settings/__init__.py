"""One settings root for the whole project: YAML files, then environment variables, then explicit overrides.

Precedence (first wins): overrides passed by the entry point (CLI options) > environment variables named
`<PACKAGE>_<SECTION>__<FIELD>` > the YAML files, later files over earlier ones > the defaults of each section.
Layers merge mapping by mapping, except that an explicit empty mapping (`guards: {}`, `--set x={}`) replaces
what lies below it: that is how a mapping is cleared. A list always replaces.
Load once at the entry point with `load_settings` and pass the object down; nothing here reads files or the
environment at import time.

The sections, one module per concern, in the order a newcomer reads them: `base` (names shared by all),
`data` (sources, validation, landing, split), `training` (models, training, sweeps), `evaluation`
(evaluation, promotion, monitoring), `storage` (artifact store, registry, deployments); then the machinery:
`root` (the `Settings` object, its sources and fingerprint), `layers` (how sources are merged) and `loading`
(YAML files, the environment and `--set` overrides). Import from here: `from <package>.settings import X`.
"""

from .base import (
    CATALOGUE_METRICS,
    ENV_PREFIX,
    MODEL_NAMES,
    PACKAGE,
    PER_USER_METRICS,
    DataSource,
    ModelName,
)
from .data import (
    PARQUET_SUFFIXES,
    Column,
    ColumnMap,
    DataConfig,
    IngestConfig,
    ItemsConfig,
    SplitConfig,
    SyntheticConfig,
    ValidationConfig,
)
from .evaluation import EvaluationConfig, MonitorConfig, PromotionConfig
from .layers import deep_merge
from .loading import (
    ConfigError,
    ConfigFileError,
    dotted_overrides,
    load_settings,
    override_value,
    settings_for_flow,
)
from .root import Settings
from .storage import DeployConfig, RegistryConfig, StorageConfig, redact_url
from .training import (
    BPRConfig,
    EASEConfig,
    IALSConfig,
    ItemKNNConfig,
    ModelConfig,
    PopularityConfig,
    SweepConfig,
    SweepTrials,
    TrainingConfig,
)

__all__ = [
    "CATALOGUE_METRICS",
    "ENV_PREFIX",
    "MODEL_NAMES",
    "PACKAGE",
    "PARQUET_SUFFIXES",
    "PER_USER_METRICS",
    "BPRConfig",
    "Column",
    "ColumnMap",
    "ConfigError",
    "ConfigFileError",
    "DataConfig",
    "DataSource",
    "DeployConfig",
    "EASEConfig",
    "EvaluationConfig",
    "IALSConfig",
    "IngestConfig",
    "ItemKNNConfig",
    "ItemsConfig",
    "ModelConfig",
    "ModelName",
    "MonitorConfig",
    "PopularityConfig",
    "PromotionConfig",
    "RegistryConfig",
    "Settings",
    "SplitConfig",
    "StorageConfig",
    "SweepConfig",
    "SweepTrials",
    "SyntheticConfig",
    "TrainingConfig",
    "ValidationConfig",
    "deep_merge",
    "dotted_overrides",
    "load_settings",
    "override_value",
    "redact_url",
    "settings_for_flow",
]
