"""docker-compose.yml and the worker image: services, images, ports, volumes, health checks,
CHURNWATCH_* settings that exist, command lines the CLI accepts."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import BaseModel

from detectors import EngineConfig
from streams.cli import app
from streams.settings import Settings, load_settings

pytestmark = pytest.mark.deploy

WORKERS = ("worker-1", "worker-2")
SERVICES = {
    "kafka",
    "topics-init",
    *WORKERS,
    "simulator",
    "prometheus",
    "grafana",
    "alertmanager",
}
IMAGES = {
    "kafka": "apache/kafka:",
    "prometheus": "prom/prometheus:",
    "grafana": "grafana/grafana:",
    "alertmanager": "prom/alertmanager:",
}
PORTS = {"kafka": 9092, "prometheus": 9090, "grafana": 3000, "alertmanager": 9093}
LONG_RUNNING = {"kafka", *WORKERS, "prometheus", "grafana", "alertmanager"}
CHURNWATCH_SERVICES = {"topics-init", *WORKERS, "simulator"}


def interpolate(text: str) -> str:
    """Compose variable interpolation with every variable unset: defaults, ``$$`` -> ``$``."""
    text = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", text)
    return text.replace("$$", "$")


def setting_env_names() -> set[str]:
    """Every environment name Settings reads: top-level fields and nested model fields."""
    cfg = Settings.model_config
    prefix, delim = cfg["env_prefix"].upper(), cfg["env_nested_delimiter"]
    names = {prefix + "CONFIG"}  # the settings file, read by load_settings
    for name, field in Settings.model_fields.items():
        top = prefix + name.upper()
        names.add(top)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names.update(top + delim + sub.upper() for sub in ann.model_fields)
    names.update(prefix + "ENGINE" + delim + f.upper() for f in EngineConfig.__struct_fields__)
    return names


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment; ``None``: passed on from the shell only when set there."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: None if v is None else interpolate(str(v)) for k, v in env.items()}


def churnwatch_argv(service: dict[str, Any]) -> list[str]:
    """The arguments given to ``churnwatch`` (entrypoint of the image, or inside ``sh -c``)."""
    command = service.get("command") or []
    entrypoint = service.get("entrypoint")
    if entrypoint:
        assert entrypoint[:2] == ["sh", "-c"], entrypoint
        words = shlex.split(interpolate(" ".join(command)))
        words = [w for w in words if w != "exec"]
        assert words[0] == "churnwatch", words
        return words[1:]
    if isinstance(command, str):
        command = shlex.split(command)
    return [interpolate(str(w)) for w in command]


def parse_cli(argv: list[str]) -> tuple[str, Any]:
    """Resolve sub-commands and parse the options as ``churnwatch`` would (nothing runs).

    Returns the command path and the (click) context whose ``params`` hold the parsed values.
    """
    cmd = typer.main.get_command(app)
    path: list[str] = []
    while hasattr(cmd, "commands"):  # a group (typer ships its own copy of click)
        name, argv = argv[0], argv[1:]
        sub = cmd.commands.get(name)
        assert sub is not None, f"churnwatch has no command {' '.join([*path, name])!r}"
        cmd, path = sub, [*path, name]
    ctx = cmd.make_context(" ".join(["churnwatch", *path]), list(argv))
    return " ".join(path), ctx


def is_usage_error(exc: BaseException) -> bool:
    return any(cls.__name__ == "UsageError" for cls in type(exc).__mro__)


def test_interpolate() -> None:
    assert interpolate("${A:-6} ${B-x} ${C} $$(date)") == "6 x  $(date)"


def test_services_images_and_ports(compose: dict) -> None:
    services = compose["services"]
    assert SERVICES <= set(services)
    assert not any("zookeeper" in name for name in services)
    for name, prefix in IMAGES.items():
        image = services[name]["image"]
        assert image.startswith(prefix), image
        assert not image.endswith(":latest"), f"{name}: pin the image version"
    for name, port in PORTS.items():
        published = {int(str(p).split(":")[-2]) for p in services[name]["ports"]}
        assert port in published, f"{name} does not publish {port}"


def test_kafka_is_one_kraft_node(compose: dict) -> None:
    env = environment(compose["services"]["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["CLUSTER_ID"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    # the workers' bootstrap address is one of the broker's advertised listeners
    broker = environment(compose["services"]["worker-1"])["CHURNWATCH_BROKER"]
    advertised = [u.split("://", 1)[1] for u in env["KAFKA_ADVERTISED_LISTENERS"].split(",")]
    assert broker in advertised


def test_every_long_running_service_has_a_healthcheck(compose: dict) -> None:
    for name in LONG_RUNNING:
        check = compose["services"][name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_each_worker_has_its_own_state_volume(compose: dict) -> None:
    services = compose["services"]
    volumes = []
    for name in WORKERS:
        env = environment(services[name])
        assert env["CHURNWATCH_STORE"] == "rocksdb://"
        mounts = [
            v for v in services[name]["volumes"] if v.split(":")[1] == env["CHURNWATCH_DATA_DIR"]
        ]
        assert len(mounts) == 1, f"{name}: no volume at {env['CHURNWATCH_DATA_DIR']}"
        volume = mounts[0].split(":")[0]
        assert volume in compose["volumes"], f"{volume} is not a named volume"
        volumes.append(volume)
    assert len(set(volumes)) == len(WORKERS), volumes


def test_workers_scale_out_by_partitions(compose: dict) -> None:
    services = compose["services"]
    partitions = {int(environment(services[n])["CHURNWATCH_PARTITIONS"]) for n in WORKERS}
    assert len(partitions) == 1, "workers must agree on the partition count"
    assert partitions.pop() >= len(WORKERS), "more workers than partitions: some idle"
    group = {environment(services[n])["CHURNWATCH_APP_ID"] for n in WORKERS}
    assert len(group) == 1, "workers must share one app id (consumer group)"
    init = environment(services["topics-init"])
    assert (
        init["CHURNWATCH_PARTITIONS"] == environment(services["worker-1"])["CHURNWATCH_PARTITIONS"]
    )


def test_order_of_start(compose: dict) -> None:
    services = compose["services"]
    assert services["topics-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in (*WORKERS, "simulator"):
        dep = services[name]["depends_on"]["topics-init"]
        assert dep["condition"] == "service_completed_successfully", name


def test_only_real_churnwatch_settings(compose: dict) -> None:
    valid = setting_env_names()
    used = set()
    for name, service in compose["services"].items():
        for key in environment(service):
            if key.startswith("CHURNWATCH_"):
                assert key in valid, f"{name}: {key} is not a churnwatch setting"
                used.add(key)
    assert {"CHURNWATCH_BROKER", "CHURNWATCH_STORE", "CHURNWATCH_DATA_DIR"} <= used


def test_security_settings_are_passed_on_not_defaulted(compose: dict) -> None:
    """An empty CHURNWATCH_KAFKA__USERNAME would turn SASL on: pass them on only when set."""
    for name in CHURNWATCH_SERVICES:
        env = environment(compose["services"][name])
        for key in ("USERNAME", "PASSWORD", "CA_FILE", "TLS", "SASL_MECHANISM"):
            assert env.get(f"CHURNWATCH_KAFKA__{key}", None) is None, (name, key)


def test_setting_names_come_from_the_model() -> None:
    """The name list can fail: nested names exist, made-up ones do not."""
    valid = setting_env_names()
    assert {"CHURNWATCH_KAFKA__CA_FILE", "CHURNWATCH_ENGINE__HORIZON_DAYS"} <= valid
    assert "CHURNWATCH_KAFKA__CA_PATH" not in valid
    assert "CHURNWATCH_METRICS" not in valid


@pytest.mark.parametrize("name", sorted(CHURNWATCH_SERVICES))
def test_service_settings_load(compose: dict, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each churnwatch service's environment gives valid settings."""
    for key in [k for k in os.environ if k.startswith("CHURNWATCH_")]:
        monkeypatch.delenv(key)
    for key, value in environment(compose["services"][name]).items():
        if value is not None:
            monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.broker == "kafka:19092"


def test_command_lines_use_real_options(compose: dict) -> None:
    services = compose["services"]
    commands = {name: parse_cli(churnwatch_argv(services[name])) for name in CHURNWATCH_SERVICES}
    assert commands["topics-init"][0] == "topics create"
    assert commands["simulator"][0] == "simulate"
    assert commands["simulator"][1].params["to"] == "kafka"
    for name in WORKERS:
        command, ctx = commands[name]
        assert command == "worker"
        assert ctx.params["metrics_host"] == "0.0.0.0"  # noqa: S104 - reachable by Prometheus
        assert ctx.params["metrics_port"] == 9308


def test_command_check_can_fail() -> None:
    for argv in (["worker", "--metrics-prot", "9308"], ["worker", "--metrics-port", "x"]):
        with pytest.raises(Exception) as info:  # noqa: B017 - checked just below
            parse_cli(argv)
        assert is_usage_error(info.value), info.value
    with pytest.raises(AssertionError):
        parse_cli(["wroker"])


def test_prometheus_scrapes_every_worker(compose: dict, deploy_dir: Path) -> None:
    config = yaml.safe_load((deploy_dir / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "churnwatch")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    ports = {
        name: parse_cli(churnwatch_argv(compose["services"][name]))[1].params["metrics_port"]
        for name in WORKERS
    }
    assert targets == {f"{name}:{port}" for name, port in ports.items()}
    mounts = compose["services"]["prometheus"]["volumes"]
    assert any(m.startswith("./deploy/prometheus:/etc/prometheus") for m in mounts)


def test_grafana_and_alertmanager_mounts_exist(compose: dict, repo_root: Path) -> None:
    for name in ("grafana", "alertmanager", "prometheus"):
        for mount in compose["services"][name]["volumes"]:
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (repo_root / source).exists(), f"{name} mounts missing {source}"


def dockerfile(repo_root: Path) -> list[str]:
    text = (repo_root / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_dockerfile(repo_root: Path) -> None:
    lines = dockerfile(repo_root)
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert froms and all(image == "python:3.11-slim" for image in froms)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    assert any(line.startswith("RUN ") and "pip install" in line for line in lines)
    assert 'ENTRYPOINT ["churnwatch"]' in lines
    assert any("pip install ." in line for line in lines), "installs the package"
    for line in lines:
        if line.startswith("ENV "):
            for key in re.findall(r"(CHURNWATCH_\w+)=", line):
                assert key in setting_env_names(), key


def test_dockerignore_lets_in_the_packages(repo_root: Path) -> None:
    patterns = (repo_root / ".dockerignore").read_text().split()
    assert "*" in patterns, "ignore everything, then let in what the image needs"
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        name = pattern.rstrip("*")
        if (repo_root / name).is_dir():
            assert f"!{name}/" in patterns or f"!{name}" in patterns, name
    for needed in ("pyproject.toml", "README.md"):
        assert f"!{needed}" in patterns
    assert any(d.startswith("rocksdict") for d in project["project"]["dependencies"]), (
        "rocksdb:// needs rocksdict"
    )
