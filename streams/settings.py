"""Configuration, read once: defaults < TOML file < CHURNWATCH_* environment < command line.

The engine gets a frozen :class:`~detectors.config.EngineConfig` and a
:class:`~detectors.playbook.Playbook`; nothing else in the code reads the
environment or config files.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from detectors import ConfigError, EngineConfig, Playbook

DEFAULT_PARTITIONS = 4
DEFAULT_BROKER = "localhost:9092"


class TopicNames(BaseModel):
    """Topic names (``CHURNWATCH_TOPICS__EVENTS=...``); ``topic_prefix`` goes in front of all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: str = "customer-events"
    orders: str = "orders"
    visits: str = "visits"
    tickets: str = "support-tickets"
    outcomes: str = "customer-outcomes"
    actions: str = "retention-actions"
    """What marketing automation did with alerts (the retention ledger's input)."""
    alerts: str = "churn-alerts"
    dlq: str = "churnwatch-dlq"
    ticks: str = "churnwatch-ticks"
    webhook_dlq: str = "churnwatch-webhook-dlq"
    webhook_acks: str = "churnwatch-webhook-acks"
    """Compacted record of the webhook forwarder's settled deliveries (``churnwatch forward``)."""


class KafkaSettings(BaseModel):
    """How to reach the brokers. TLS is on whenever SASL credentials are given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tls: bool = False
    ca_file: Path | None = None
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None

    @property
    def use_tls(self) -> bool:
        return self.tls or self.username is not None


class WebhookSettings(BaseModel):
    """``churnwatch forward``: alerts to an HTTP endpoint (``CHURNWATCH_WEBHOOK__URL=...``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    secret: SecretStr | None = None
    """HMAC-SHA256 signing key (``CHURNWATCH_WEBHOOK__SECRET``, or ``--secret-env NAME``)."""
    group: str | None = None
    """Consumer group; default ``<app_id>-webhook``. The acknowledgement record is per group."""
    max_retries: int = Field(8, ge=0, le=100)
    """Retries after the first attempt before a retryable failure is dead-lettered."""
    timeout_s: float = Field(10.0, gt=0)
    concurrency: int = Field(8, ge=1, le=1024)
    """Alerts posted at once (always one at a time per customer)."""
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    retry_after_max_s: float = Field(300.0, ge=0)
    """A receiver's ``Retry-After`` is honoured up to this many seconds."""
    dedupe_days: float = Field(7.0, gt=0)
    """How long acknowledged alert ids are remembered (also the acks topic's retention)."""
    dedupe_max_ids: int = Field(1_000_000, ge=1)
    max_buffered: int = Field(2000, ge=1)
    """Records read but not yet settled; the consumer pauses above this."""
    start: Literal["earliest", "latest"] = "earliest"
    """Where a new group starts reading the alert topic."""
    shutdown_grace_s: float = Field(10.0, ge=0)
    """On SIGTERM, how long deliveries in progress may finish."""


class Settings(BaseSettings):
    """Everything configurable outside the engine, and the engine's own section."""

    model_config = SettingsConfigDict(
        env_prefix="CHURNWATCH_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    partitions: int = Field(DEFAULT_PARTITIONS, ge=1, le=1024)
    broker: str = DEFAULT_BROKER
    """Comma-separated ``host:port`` list (``CHURNWATCH_BROKER``)."""
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    app_id: str = "churnwatch"
    """Faust app id: the consumer group and the prefix of the changelog topics."""
    topic_prefix: str = ""
    topics: TopicNames = Field(default_factory=TopicNames)
    inputs: tuple[str, ...] = ("events",)
    """Which input topics the worker reads: any of events, orders, visits, tickets."""
    read_outcomes: bool = True
    read_actions: bool = True
    """Read the ``retention-actions`` topic (action reports linked to alert cases)."""
    store: str = "memory://"
    """Faust table store: ``memory://`` (tests) or ``rocksdb://`` (production, on rocksdict)."""
    data_dir: Path = Path("churnwatch-data")
    rocksdb_write_buffer_mb: int = Field(16, ge=1)
    """RocksDB memtable size per partition (Faust's default, 64 MB x 3, is per partition)."""
    rocksdb_block_cache_mb: int = Field(64, ge=1)
    """RocksDB block cache per partition (Faust's default is 2 GB per partition)."""
    clock: Literal["wall", "event"] = "wall"
    tick_interval_s: float = Field(10.0, gt=0)
    """Wall clock mode: how often each owned partition is swept."""
    batch_records: int = Field(1000, ge=1)
    """Records per batch at most; a batch ends with one checkpoint per touched partition."""
    batch_wait_s: float = Field(0.02, gt=0)
    """How long a batch waits to fill before it is processed (adds to latency)."""
    checkpoint_bytes: int = Field(512 * 1024, ge=1024, le=8 * 1024 * 1024)
    """Checkpoint early once the changed states reach this size (a checkpoint is one
    Kafka message: keep it under the brokers' ``message.max.bytes``, 1 MB by default)."""
    session_timeout_s: float = Field(10.0, gt=0)
    leave_group_on_stop: bool | None = None
    """Send LeaveGroup on stop, so the group rebalances at once. By default on, except
    on a tansu broker (the embedded one), whose coordinator can then livelock the group;
    members stopped there are evicted after ``session_timeout_s``."""
    fetch_wait_ms: int = Field(50, ge=1, le=1500)
    """Consumer fetch wait; Faust 0.15.3 hard-codes 1500 ms, we patch it (see streams/app.py)."""
    commit_interval_s: float = Field(1.0, gt=0)
    producer_batch_bytes: int = Field(65536, ge=1)
    """Producer batch size in bytes (Faust's ``producer_max_batch_size``)."""
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    web_port: int | None = Field(None, ge=1, le=65535)
    """Faust's own web server: off unless a port is given (then bound to 127.0.0.1)."""
    log_level: str = "warning"
    engine: dict[str, Any] = Field(default_factory=dict)
    """Engine settings (see ``EngineConfig``), e.g. ``CHURNWATCH_ENGINE__HORIZON_DAYS=60``."""
    playbook_file: Path | None = None
    pseudonymise_key: SecretStr | None = None
    """Set (``CHURNWATCH_PSEUDONYMISE_KEY``, at least 16 characters): alerts carry
    ``HMAC-SHA256(key, customer_id)`` instead of the customer id (see streams/privacy.py)."""
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)

    @field_validator("pseudonymise_key")
    @classmethod
    def _key_length(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value().encode()) < 16:
            raise ValueError("the pseudonymisation key needs at least 16 characters")
        return key

    def engine_config(self) -> EngineConfig:
        return EngineConfig.from_mapping(self.engine)

    def playbook(self) -> Playbook:
        if self.playbook_file is None:
            return Playbook()
        return Playbook.from_mapping(read_toml(self.playbook_file))

    def topic(self, name: str) -> str:
        """The full name of a topic by its role (``events``, ``alerts``, ``dlq`` ...)."""
        return self.topic_prefix + getattr(self.topics, name)

    def changelog(self, table: str) -> str:
        """Faust's changelog topic name for one of our tables."""
        return f"{self.app_id}-{table}-changelog"

    def bootstrap(self) -> list[str]:
        return [b.strip() for b in self.broker.split(",") if b.strip()]


def with_webhook(settings: Settings, secret_env: str | None = None, **flags: Any) -> Settings:
    """``settings`` with command-line webhook flags (``None``: unchanged) and, with
    ``secret_env``, the signing secret read from that environment variable."""
    update = {k: v for k, v in flags.items() if v is not None}
    if secret_env is not None:
        value = os.environ.get(secret_env)
        if not value:
            raise ConfigError(f"--secret-env: the environment variable {secret_env} is not set")
        update["secret"] = SecretStr(value)
    try:
        webhook = WebhookSettings.model_validate({**settings.webhook.model_dump(), **update})
    except Exception as exc:  # pydantic's ValidationError: say it plainly
        raise ConfigError(f"invalid webhook settings: {exc}") from None
    return settings.model_copy(update={"webhook": webhook})


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from an optional TOML file (``CHURNWATCH_CONFIG``), the environment and flags.

    ``overrides`` with value ``None`` are ignored; ``engine`` overrides merge key by key.
    """
    path = config or (Path(p) if (p := os.environ.get("CHURNWATCH_CONFIG")) else None)
    file_data = read_toml(path) if path else {}
    try:
        env = Settings()
    except ValidationError as exc:
        raise ConfigError(f"invalid settings in the environment: {plain(exc)}") from None
    merged: dict[str, Any] = {**file_data}
    for key, value in env.model_dump(exclude_unset=True).items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    engine_overrides = overrides.pop("engine", None) or {}
    merged["engine"] = {**merged.get("engine", {}), **engine_overrides}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = Settings.model_validate(merged)
        settings.engine_config()
    except ConfigError:
        raise
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {plain(exc)}") from None
    except Exception as exc:  # anything else from the engine's settings: say it plainly
        raise ConfigError(f"invalid settings: {exc}") from None
    return settings


def plain(exc: ValidationError) -> str:
    """A validation error as ``field: problem`` lines, without the offending values: a
    misspelt or mistyped password must not end up in a terminal or a log."""
    lines = []
    for e in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(x) for x in e["loc"]) or "settings"
        lines.append(f"{where}: {e['msg']}")
    return "; ".join(lines)
