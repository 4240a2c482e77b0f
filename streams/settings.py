"""Configuration, read once: defaults < TOML file < CHURNWATCH_* environment < command line.

The engine gets a frozen :class:`~detectors.config.EngineConfig` and a
:class:`~detectors.playbook.Playbook`; nothing else in the code reads the
environment or config files.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from detectors import ConfigError, EngineConfig, Playbook

DEFAULT_PARTITIONS = 4


class Settings(BaseSettings):
    """Everything configurable outside the engine, and the engine's own section."""

    model_config = SettingsConfigDict(
        env_prefix="CHURNWATCH_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    partitions: int = Field(DEFAULT_PARTITIONS, ge=1, le=1024)
    engine: dict[str, Any] = Field(default_factory=dict)
    """Engine settings (see ``EngineConfig``), e.g. ``CHURNWATCH_ENGINE__HORIZON_DAYS=60``."""
    playbook_file: Path | None = None

    def engine_config(self) -> EngineConfig:
        return EngineConfig.from_mapping(self.engine)

    def playbook(self) -> Playbook:
        if self.playbook_file is None:
            return Playbook()
        return Playbook.from_mapping(read_toml(self.playbook_file))


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
        merged[key] = {**merged.get(key, {}), **value} if key == "engine" else value
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
