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

from pydantic import BaseModel, ConfigDict, Field, SecretStr
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
    alerts: str = "churn-alerts"
    dlq: str = "churnwatch-dlq"
    ticks: str = "churnwatch-ticks"


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
    env = Settings()
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
    except Exception as exc:  # pydantic's ValidationError: say it plainly
        raise ConfigError(f"invalid settings: {exc}") from None
    return settings
