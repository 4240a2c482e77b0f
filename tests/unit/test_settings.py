"""Settings: file < environment < flags, clear errors, shipped examples in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors import ConfigError, EngineConfig, Playbook
from detectors.playbook import DEFAULT_PLAYS
from streams.settings import load_settings, read_toml

ROOT = Path(__file__).resolve().parents[2]


def test_precedence_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("partitions = 2\n[engine]\nhorizon_days = 30\nmedium = 0.22\n")
    assert load_settings(cfg).partitions == 2
    monkeypatch.setenv("CHURNWATCH_ENGINE__HORIZON_DAYS", "45")
    monkeypatch.setenv("CHURNWATCH_PARTITIONS", "3")
    s = load_settings(cfg)
    assert (s.partitions, s.engine_config().horizon_days, s.engine_config().medium) == (3, 45, 0.22)
    s = load_settings(cfg, partitions=5, engine={"horizon_days": 60})
    assert (s.partitions, s.engine_config().horizon_days) == (5, 60)


def test_config_env_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("partitions = 7\n")
    monkeypatch.setenv("CHURNWATCH_CONFIG", str(cfg))
    assert load_settings().partitions == 7


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[engine]\nhorizon_days = -1\n", "horizon_days"),
        ("[engine]\nmedium = 0.9\n", "medium < high < critical"),
        ("[engine]\nno_such_setting = 1\n", "no_such_setting"),
        ("partitions = 0\n", "partitions"),
        ("partitions = [", "not valid TOML"),
    ],
)
def test_bad_settings_are_plain_errors(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_settings(cfg)


@pytest.mark.parametrize(
    ("engine", "levels"),
    [
        ({}, (0.5, 0.7, 0.85)),
        ({"risk_target": "churn"}, (0.17, 0.25, 0.38)),
        ({"risk_target": "churn", "high": 0.3}, (0.17, 0.3, 0.38)),
        ({"risk_target": "lapse", "critical": 0.9}, (0.5, 0.7, 0.9)),
    ],
)
def test_levels_default_by_target_and_settings_override_them_one_by_one(
    engine: dict[str, object], levels: tuple[float, float, float]
) -> None:
    assert EngineConfig.from_mapping(engine).thresholds == levels


def test_a_level_out_of_order_with_the_targets_defaults_names_them() -> None:
    with pytest.raises(ConfigError, match=r"got 0.75, 0.7, 0.85 \(unset ones are the lapse"):
        EngineConfig.from_mapping({"medium": 0.75})


def test_missing_file_is_a_plain_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.toml")


def test_shipped_settings_match_engine_defaults() -> None:
    s = load_settings(ROOT / "deploy" / "churnwatch.toml")
    assert s.engine_config() == EngineConfig()


def test_shipped_playbook_is_the_default_playbook() -> None:
    pb = Playbook.from_mapping(read_toml(ROOT / "deploy" / "playbook.toml"))
    assert pb.plays == DEFAULT_PLAYS


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"actions": []}, "no \\[\\[actions\\]\\]"),
        ({"actions": [{"category": "service", "action": "x", "channel": "y"}]}, "no action for"),
        ({"actions": [{"category": "mood", "action": "x", "channel": "y"}]}, "invalid playbook"),
    ],
)
def test_bad_playbooks_are_rejected(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Playbook.from_mapping(data)


def test_playbook_actions_follow_level_and_category() -> None:
    from detectors.reasons import Reason

    reasons = [
        Reason("order_overdue", "engagement", "m", 1.5),
        Reason("price_complaint", "price", "m", 0.6),
        Reason("ticket_unanswered", "service", "m", 0.5),
        Reason("high_value", "value", "m", 0.0),
    ]
    pb = Playbook()
    medium = pb.actions(reasons, level=1)
    critical = pb.actions(reasons, level=3)
    assert {a.action for a in medium} < {a.action for a in critical}
    # at most two risk categories, the strongest ones, plus value
    assert not any(a.action == "fast_track_ticket" for a in critical)
    assert critical[-1].action == "account_manager_outreach" and critical[-1].priority == 1
    assert all(a.priority == 3 for a in medium)
