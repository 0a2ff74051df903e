"""Where things are kept and run: the artifact store (`storage`), the model registry's database (`registry`,
with its secrets kept out of every dump) and the served deployments (`deploy`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, SecretStr, model_validator

from .base import PACKAGE, _Section


class StorageConfig(_Section):
    """`storage`: where the artifact store is, how links to it open, and its S3 credentials (never dumped)."""

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


class RegistryConfig(_Section):
    """`registry`: the registry's database URL, and the secrets kept out of it (never dumped)."""

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
