"""One settings root for the whole project: YAML files, then environment variables, then explicit overrides.

Precedence (first wins): overrides passed by the entry point (CLI options) > environment variables named
`<PACKAGE>_<SECTION>__<FIELD>` > the YAML files, later files over earlier ones > the defaults below.
Layers merge mapping by mapping, except that an explicit empty mapping (`guards: {}`, `--set x={}`) replaces
what lies below it: that is how a mapping is cleared. A list always replaces.
Load once at the entry point with `load_settings` and pass the object down; nothing here reads files or the
environment at import time.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from .canonical import canonical_json

PACKAGE = __name__.split(".")[0]
# The models a config can name: the one list the settings, the CLI's choices and `models.MODELS` follow.
ModelName = Literal["popularity", "itemknn", "ease", "bpr", "ials"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
DataSource = Literal["synthetic", "movielens", "file", "snapshot"]
ENV_PREFIX = f"{PACKAGE.upper()}_"

# What `evaluation.evaluate` computes at each K, named `<metric>@<K>` (e.g. ndcg@10): per-user metrics, then
# catalogue-level ones. Defined here, not in evaluation.py (which takes these), because that module imports
# torch, seconds that checking a config must not pay.
PER_USER_METRICS = ("ndcg", "recall", "hitrate", "precision", "map", "mrr", "novelty")
CATALOGUE_METRICS = ("coverage",)

# Set only while `load_settings` builds an object, so the YAML files are an argument, not global state.
_YAML_LAYERS: ContextVar[tuple[dict[str, Any], ...]] = ContextVar("_YAML_LAYERS", default=())


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticConfig(_Section):
    n_users: int = Field(2_000, gt=0)
    n_items: int = Field(1_000, gt=0)
    n_interactions: int = Field(100_000, gt=0, description="Events drawn before (user, item) de-duplication.")
    n_topics: int = Field(20, gt=0, description="Latent tastes shared by users and items.")
    popularity_exponent: float = Field(1.0, ge=0, description="Zipf exponent of item popularity.")
    activity_sigma: float = Field(1.0, ge=0, description="Log-normal spread of user activity.")
    topic_affinity: float = Field(0.8, ge=0, le=1, description="Share of events drawn from a user's tastes.")
    start: int = Field(1_700_000_000, description="First event time, Unix seconds.")
    days: int = Field(180, gt=0)
    with_rating: bool = True


Column = str | int  # a header name, or a 0-based position (the only way to name a column without a header)


class ColumnMap(_Section):
    """Which column of a file holds each contract column: a header name or a 0-based position.

    `timestamp` and `rating` may be null for data without them: without timestamps the snapshot keeps the
    order events arrived in, the default split is random and monitoring windows follow arrival order.
    """

    user_id: Column = "user_id"
    item_id: Column = "item_id"
    timestamp: Column | None = "timestamp"
    rating: Column | None = "rating"


class ItemsConfig(_Section):
    """An optional catalogue file (item id and title) that `recommend` shows titles from. MovieLens
    directories bring theirs (u.item, movies.dat, movies.csv); other sources name one here."""

    path: Path | None = Field(None, description="CSV/Parquet file with an item id and a title column.")
    id: Column = "item_id"
    title: Column = "title"
    csv_separator: str = ","
    has_header: bool = True

    @field_validator("csv_separator")
    @classmethod
    def _unescaped(cls, value: str) -> str:
        return _separator("data.items.csv_separator", value)


# What a file's name says about its format when `data.format` is auto (anything else is read as CSV text).
PARQUET_SUFFIXES = (".parquet", ".pq")
_SEPARATOR_ESCAPES = {"\\t": "\t", "tab": "\t", "\\s": " ", "space": " "}


def _separator(field: str, value: str) -> str:
    """A separator as written in a config file or after --set: `\\t` (or `tab`) is a tab."""
    value = _SEPARATOR_ESCAPES.get(value, value)
    if not value or any(c in value for c in '\r\n"') or value.isalnum():
        raise ValueError(
            f"{field}: {value!r} cannot separate columns; use a character such as ',', ';', '|', '::' or \\t"
        )
    return value


class DataConfig(_Section):
    source: DataSource = Field(
        "synthetic", description="`snapshot`: the current snapshot built by `ingest` from landed batches."
    )
    path: Path | None = Field(None, description="MovieLens directory, or a data file or directory of them.")
    # Registered models, their champion and history are kept per dataset: a model is only ever judged
    # against, and only ever replaces, a champion trained on the same dataset.
    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="The dataset's name in the registry; null: `synthetic`, `snapshot` or the path's stem.",
    )
    synthetic: SyntheticConfig = SyntheticConfig()
    format: Literal["auto", "csv", "parquet"] = Field(
        "auto", description="auto: .parquet/.pq files are Parquet, any other is text (.csv .dat .tsv .txt)."
    )
    has_header: bool = Field(True, description="false: data.columns.* are 0-based column positions.")
    columns: ColumnMap = ColumnMap()
    csv_separator: str = Field(",", description="One or more characters (e.g. '::'); \\t for a tab.")
    timestamp_unit: Literal["s", "ms", "us", "iso"] = Field(
        "s", description="How timestamps are written in files."
    )
    items: ItemsConfig = ItemsConfig()

    @field_validator("csv_separator")
    @classmethod
    def _unescaped(cls, value: str) -> str:
        return _separator("data.csv_separator", value)

    @model_validator(mode="after")
    def _checked(self) -> DataConfig:
        if self.source in ("movielens", "file") and self.path is None:
            raise ValueError(f"data.path is required when data.source is '{self.source}'")
        if not self.has_header:
            # An environment variable gives the position as text.
            columns = self.columns.model_dump()
            digits = {k: int(v) for k, v in columns.items() if isinstance(v, str) and v.isdigit()}
            if digits:
                object.__setattr__(self, "columns", ColumnMap(**{**columns, **digits}))
        if not self.has_header and self.source in ("file", "snapshot"):  # files, or batches into a snapshot
            named = [k for k, v in self.columns.model_dump().items() if isinstance(v, str)]
            if named:
                raise ValueError(
                    f"data.has_header is false, so data.columns.{named[0]} must be a 0-based column "
                    f"position (e.g. --set data.columns.{named[0]}=0), not the name "
                    f"{getattr(self.columns, named[0])!r}"
                )
        return self

    def dataset_name(self) -> str:
        """The dataset's registry name: `data.name`, else `synthetic`, `snapshot`, or the path's stem
        (`ml-100k` for a MovieLens directory, `ratings` for ratings.dat)."""
        if self.name:
            return self.name
        if self.source in ("synthetic", "snapshot") or self.path is None:
            return self.source
        path = Path(self.path)
        stem = path.name if path.is_dir() or not path.suffix else path.stem
        cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64]
        return cleaned or "data"

    def is_parquet(self, file: Path) -> bool:
        """Whether `file` is read as Parquet (else as CSV text)."""
        if self.format != "auto":
            return self.format == "parquet"
        return file.suffix.lower() in PARQUET_SUFFIXES


class ValidationConfig(_Section):
    rating_min: float = 0.0
    rating_max: float = 5.0
    timestamp_min: int = Field(
        631_152_000, description="Earliest plausible event, Unix seconds (1990-01-01)."
    )
    max_future_seconds: int = Field(86_400, ge=0, description="Tolerated clock skew into the future.")
    # Checks on a new batch (landing zone), against the current snapshot:
    min_batch_rows: int = Field(1, ge=1)
    max_batch_rows: int = Field(5_000_000, ge=1)
    max_new_user_share: float = Field(
        1.0, ge=0, le=1, description="Share of a batch's rows from unseen users."
    )
    max_new_item_share: float = Field(0.5, ge=0, le=1, description="Share of a batch's rows on unseen items.")
    min_user_interactions: int = Field(1, ge=1, description="Per user, in the snapshot the batch would make.")
    min_item_interactions: int = Field(1, ge=1, description="Per item, in the snapshot the batch would make.")
    min_share_at_minimum: float = Field(
        0.0, ge=0, le=1, description="Share of a batch's rows whose user and item reach those minimums."
    )


class IngestConfig(_Section):
    """Where new batch files arrive, when one counts as arrived, and where refused ones are kept."""

    landing: Path = Path("landing")
    quarantine: Path = Path("quarantine")
    settle_seconds: float = Field(
        5.0, ge=0, description="A landed file is ready once its size and mtime held still this long."
    )
    lock_ttl_seconds: float = Field(
        60.0, gt=0, description="The ingest lock of a holder on another host that stopped refreshing expires."
    )
    lock_wait_seconds: float = Field(600.0, ge=0, description="How long an ingest waits for the lock.")


class SplitConfig(_Section):
    strategy: Literal["auto", "temporal", "random", "leave-last-out", "user-random"] = Field(
        "auto",
        description="auto: temporal with timestamps, else random; temporal: global time cut-off; random: "
        "global holdout; leave-last-out: each user's last event; user-random: test_fraction of each user's "
        "events.",
    )
    test_fraction: float = Field(0.2, gt=0, lt=1)
    k_core: int = Field(
        0, ge=0, description="Before splitting, keep users and items with >= k events (0: off)."
    )
    min_rating: float | None = Field(None, description="Before splitting, keep events rated at least this.")


class PopularityConfig(_Section):
    pass


class EASEConfig(_Section):
    l2: float = Field(250.0, gt=0, description="Ridge penalty lambda on the item-item weights.")
    l2_search: list[float] = Field(
        default_factory=list,
        description="Candidates for l2, picked by NDCG@10 on an inner 90/10 split of the training data.",
    )
    batch_size: int = Field(1_024, gt=0, description="Users scored per batch.")


class ItemKNNConfig(_Section):
    neighbours: int = Field(100, gt=0, description="Most similar items kept per item.")
    shrink: float = Field(
        0.0, ge=0, description="Added to the cosine denominator: damps rare co-occurrences."
    )


class IALSConfig(_Section):
    factors: int = Field(64, gt=0)
    iterations: int = Field(15, gt=0, description="Alternating passes (users, then items).")
    alpha: float = Field(10.0, gt=0, description="Extra confidence of an observed pair.")
    regularization: float = Field(60.0, ge=0, description="L2 penalty lambda on the factors.")
    cg_steps: int = Field(3, gt=0, description="Conjugate-gradient steps per solve.")


class BPRConfig(_Section):
    factors: int = Field(64, gt=0)
    epochs: int = Field(50, gt=0)
    learning_rate: float = Field(0.01, gt=0, description="Adam step size.")
    weight_decay: float = Field(0.01, ge=0, description="L2 penalty on the embeddings of each triple.")
    batch_size: int = Field(4_096, gt=0, description="Triples per optimiser step.")
    # Off by default: on ml-100k (random 80/20) the held-out hit rate peaks near epoch 12, while test NDCG@10
    # keeps rising to epoch 50 (0.350 stopped early, 0.387 after 50 epochs on all pairs).
    patience: int = Field(
        0, ge=0, description="Epochs without validation improvement before stopping; 0: off."
    )
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="Pairs held out to decide when to stop.")


class ModelConfig(_Section):
    name: ModelName = "ease"
    popularity: PopularityConfig = PopularityConfig()
    itemknn: ItemKNNConfig = ItemKNNConfig()
    ease: EASEConfig = EASEConfig()
    bpr: BPRConfig = BPRConfig()
    ials: IALSConfig = IALSConfig()


class TrainingConfig(_Section):
    """How training reports and checkpoints; none of it changes the weights (so not in the fingerprint)."""

    progress_bar: bool = Field(True, description="An epoch progress bar on a terminal (never in a log file).")
    checkpoint_every: int = Field(0, ge=0, description="Save the model every N epochs; 0: off.")
    checkpoint_dir: str = Field("checkpoints", description="Local directory for epoch checkpoints.")


def _check_evaluated(field: str, names: Sequence[str], evaluation: EvaluationConfig) -> None:
    known = evaluation.metrics()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"{field}: {', '.join(map(repr, unknown))} is not a metric evaluation computes with evaluation.k="
            f"{evaluation.k}; one of {', '.join(known)}"
        )


class EvaluationConfig(_Section):
    k: list[PositiveInt] = Field(default_factory=lambda: [10, 20], min_length=1)
    primary_metric: str = Field("ndcg@10", description="<metric>@<K>, K one of `k`; promotion decides on it.")
    batch_size: int = Field(1_024, gt=0, description="Users ranked per batch during evaluation.")
    bootstrap_resamples: int = Field(1_000, ge=100, description="Resamples of users for the 95% intervals.")

    def metrics(self) -> list[str]:
        """Every metric name an evaluation with these settings reports."""
        return [f"{m}@{k}" for k in sorted(set(self.k)) for m in (*PER_USER_METRICS, *CATALOGUE_METRICS)]

    @model_validator(mode="after")
    def _primary_metric_is_evaluated(self) -> EvaluationConfig:
        # Checked here, not after training: a typo would otherwise fail once a model is already registered.
        _check_evaluated("evaluation.primary_metric", [self.primary_metric], self)
        return self


class RegistryConfig(_Section):
    url: str | None = Field(
        None,
        description="SQLAlchemy URL of the model registry (e.g. postgresql+psycopg://user@host/db); "
        "null: a SQLite file `registry.sqlite` at the root of a local artifact store.",
    )
    # Excluded from dumps like the storage credentials; inserted into `url` when it has no password.
    password: SecretStr | None = Field(None, exclude=True)
    # Other secrets a driver takes in the URL's query (e.g. `sslpassword`), likewise put back when connecting.
    secret_query: dict[str, SecretStr] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _secrets_out_of_url(cls, values: Any) -> Any:
        """Passwords written into the URL (`user:password@` or `?password=`) move to `password` and
        `secret_query`, so `config`, manifests, reports and flow-run parameters never show them."""
        if not isinstance(values, Mapping) or not values.get("url"):
            return values
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(str(values["url"]))
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            # Not echoed: a mistyped URL may still hold a password.
            raise ValueError(
                "registry.url is not a database URL (dialect+driver://user@host/database)"
            ) from None
        secrets = {k: v for k, v in url.query.items() if _is_secret_name(k)}
        if url.password is None and not secrets:
            return values
        password = url.password if url.password is not None else secrets.pop("password", None)
        secrets.pop("password", None)  # a second password beside the userinfo one cannot both be used
        query = {k: v for k, v in url.query.items() if not _is_secret_name(k)}
        # URL is a named tuple; `set(password=None)` would mean "unchanged".
        clean = url._replace(password=None).set(query=query)
        return {
            **values,
            "url": clean.render_as_string(hide_password=False),
            "password": values.get("password") or password,
            "secret_query": {**secrets, **dict(values.get("secret_query") or {})},
        }


def _is_secret_name(name: str) -> bool:
    """A URL query parameter that holds a secret (password, sslpassword, token, secret, ...)."""
    return any(word in name.lower() for word in ("password", "passwd", "secret", "token"))


def redact_url(url: str) -> str:
    """`url` fit to print: its password and secret query values as `***`."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(not a URL)"
    query = {k: ("***" if _is_secret_name(k) else v) for k, v in parsed.query.items()}
    # `***` would be percent-encoded in the query; written back plain, it reads as what it is.
    return parsed.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


class PromotionConfig(_Section):
    """When a newly trained model may replace the champion (evaluated after each pipeline run)."""

    enabled: bool = Field(True, description="Register each run's model and decide on promotion.")
    margin: float = Field(
        0.0, ge=0, description="Required gain on evaluation.primary_metric over the champion (absolute)."
    )
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="The gain's paired-bootstrap interval at this level must clear `margin`.",
    )
    guards: dict[str, float] = Field(
        default_factory=lambda: {"coverage@10": 0.05},
        description="metric -> largest tolerated drop (absolute) against the champion.",
    )
    latency_budget_ms: float | None = Field(
        2_000.0, gt=0, description="Most milliseconds to rank top-K for 1,000 users; null: no budget."
    )
    manual_approval: bool = Field(
        False, description="Pause the flow for a person to approve in the Prefect UI before promoting."
    )
    approval_timeout_seconds: int = Field(3_600, gt=0)


_DRIFT_THRESHOLDS = {
    "user_history": 0.1,
    "item_popularity": 0.1,
    "rating": 0.1,
    "new_user": 0.1,
    "new_item": 0.1,
    "hour_of_day": 0.1,
    "day_of_week": 0.1,
    "score": 0.15,
    "recommended_item_popularity": 0.15,
}


class MonitorConfig(_Section):
    """Drift and decay checks of the champion (the `monitor` flow); see monitoring.py for the windows."""

    # One counted feature beyond its threshold: a real shift rarely moves many at once (a move to the long
    # tail moves item popularity alone), and the thresholds, not a share, keep noise out.
    drift_share: float = Field(
        0.2, gt=0, le=1, description="Share of drifted counted features (events or predictions): drift."
    )
    # Effect sizes (normed Wasserstein distance for numbers, Jensen-Shannon distance for categories), set by
    # benchmarks/drift.py: on stationary MovieLens 100K windows the largest score seen stays well below them.
    thresholds: dict[str, float] = Field(
        default_factory=lambda: dict(_DRIFT_THRESHOLDS),
        description="Per feature: the effect size from which it counts as drifted.",
    )
    # Small windows: a threshold is never below this many times sqrt(1/users + 1/users) of the two windows,
    # the chance difference of two samples whose draws are users rather than events (see monitoring.py).
    noise_allowance: float = Field(
        2.0, ge=0, description="Thresholds never below this x sqrt(1/users_before + 1/users_now)."
    )
    # Hour and day record session bursts, not taste; the prediction features compare the champion on users
    # it trained on with users it did not (see monitoring.py): reported, never counted.
    context_columns: list[str] = Field(
        default_factory=lambda: ["hour_of_day", "day_of_week", "score", "recommended_item_popularity"],
        description="Features reported but never counted towards drift.",
    )
    max_decay: float = Field(
        0.05, ge=0, description="Largest tolerated drop of the primary metric on new events (absolute)."
    )
    min_new_events: int = Field(500, ge=1, description="Fewer new events than this: nothing is judged.")
    max_rows: int = Field(20_000, ge=1_000, description="Events per window compared (a seeded sample).")
    users_for_predictions: int = Field(500, ge=10, description="Users whose top-10 is compared per window.")


class DeployConfig(_Section):
    """Schedules and event names of the served deployments (`serve`, deployments/prefect.yaml)."""

    pipeline_cron: str = Field("0 3 * * *", description="Retrain on the current snapshot (UTC).")
    monitor_cron: str = Field("0 * * * *", description="Check drift and decay (UTC).")
    new_data_event: str = Field(
        f"{PACKAGE}.data.arrived", description="Emitted by `watch`; runs ingest + pipeline."
    )
    drift_event: str = Field(f"{PACKAGE}.drift.detected", description="Emitted by `monitor`; runs a retrain.")
    # The same champion and snapshot are reported once (see alerts.py); the cooldown also bounds new windows,
    # so batches that keep looking drifted start one retrain per cooldown rather than one per monitor run.
    drift_cooldown_minutes: float = Field(
        360.0, ge=0, description="Least time between two drift events, whatever drifted (0: no cooldown)."
    )
    # A retrain on the same snapshot with the same settings is the champion again (every step a cache hit).
    # After drift the newest events matter most, so by default the retrain holds out half as much of them.
    drift_overrides: dict[str, Any] = Field(
        default_factory=lambda: {"split": {"test_fraction": 0.1}},
        description="Settings laid over the rest for a retrain on drift ({}: the same as the nightly one).",
    )


class SweepTrials(_Section):
    """One model of a sweep and the values to try for its parameters (every combination is a trial)."""

    model: ModelName
    params: dict[str, list[Any]] = Field(default_factory=dict)


class SweepConfig(_Section):
    """`sweep`: trials over models and hyper-parameters on one split, in parallel on a Dask cluster."""

    # A list, not a mapping: an experiment file that sets `grid` replaces the whole grid (mappings from
    # several config files are merged key by key, so a default model could never be dropped).
    grid: list[SweepTrials] = Field(
        default_factory=lambda: [
            SweepTrials(model="ease", params={"l2": [100.0, 250.0, 500.0]}),
            SweepTrials(model="ials", params={"factors": [32, 64], "regularization": [30.0, 60.0]}),
            SweepTrials(model="itemknn", params={"neighbours": [50, 100]}),
        ],
        min_length=1,
        description="Models and parameter values; each combination is a trial, laid over `model`.",
    )
    dask_address: str | None = Field(
        None, description="A running Dask scheduler (tcp://host:8786); null: a local cluster for the sweep."
    )
    workers: int = Field(2, gt=0, description="Worker processes of the local cluster.")
    threads_per_worker: int = Field(1, gt=0, description="Task threads and torch threads per worker.")
    register_best: bool = Field(True, description="Register the best trial's model as the challenger.")


class StorageConfig(_Section):
    uri: str = Field("artifacts", description="Local directory or s3://bucket/prefix of the artifact store.")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint; None means AWS.")
    # Browsers refuse file:// links from a web page, so the Prefect UI links a local store through HTTP.
    public_url: str | None = Field(
        "http://127.0.0.1:4201",
        description="Where `serve-files` serves a local store: links are <public_url>/<path in the store>; "
        "None: file:// links. Unused for S3 (links are presigned).",
    )
    # SigV4 presigned URLs cannot outlive 7 days.
    link_expiry_seconds: int = Field(
        86_400, gt=0, le=604_800, description="How long a presigned S3 link opens (at most 7 days)."
    )
    # Excluded from dumps: credentials come from the environment wherever the code runs, never from a
    # report, a manifest or a flow run's parameters.
    access_key_id: SecretStr | None = Field(None, exclude=True)
    secret_access_key: SecretStr | None = Field(None, exclude=True)


class Settings(BaseSettings):
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


class ConfigError(ValueError):
    """A config file, override or environment variable that cannot be read; the message names it."""


class ConfigFileError(ConfigError):
    pass


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `update` laid over it, section by section; an empty mapping in `update` replaces."""
    out = dict(base)
    for key, value in update.items():
        nested = isinstance(value, Mapping) and value and isinstance(out.get(key), Mapping)
        out[key] = deep_merge(out[key], value) if nested else value
    return out


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
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
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
    loaded with the worker's environment (default: configs/default.yaml)."""
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
