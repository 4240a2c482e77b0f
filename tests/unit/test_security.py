"""Security settings: TLS and SASL reach the Kafka clients, secrets stay out of reprs and
error output, /metrics binds where asked, metric series do not grow with customers, and
customer ids can leave the pipeline pseudonymised."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from prometheus_client import CollectorRegistry

from detectors import ConfigError, decode_alert, encode_alert
from streams.app import create_app
from streams.broker import free_port
from streams.kafka import client_options, faust_credentials
from streams.metrics import Metrics
from streams.pipeline import Pipeline, PipelineConfig, Record
from streams.privacy import Pseudonymiser, pseudonym
from streams.settings import Settings, load_settings
from streams.simulate import SimConfig, generate
from streams.tables import LocalStore

pytestmark = pytest.mark.unit

SECRET = "s3cret-Pa55word-9d1"  # noqa: S105 - a test secret
KEY = "pseudonymisation-key-for-tests"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed CA certificate (openssl), as a deployment would mount one."""
    d = tmp_path_factory.mktemp("ca")
    cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    cmd += ["-subj", "/CN=churnwatch-test-ca", "-keyout", str(d / "ca.key")]
    cmd += ["-out", str(d / "ca.pem")]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl is not usable here: {exc}")
    return d / "ca.pem"


def sasl_settings(ca: Path | None = None, **kafka: Any) -> Settings:
    options = {"username": "churnwatch", "password": SECRET, "sasl_mechanism": "SCRAM-SHA-256"}
    if ca is not None:
        options["ca_file"] = str(ca)
    return Settings(broker="b-1:9096,b-2:9096", kafka={**options, **kafka})


def ca_subjects(ctx: ssl.SSLContext) -> list[str]:
    return [dict(x[0] for x in c["subject"])["commonName"] for c in ctx.get_ca_certs()]


# -------------------------------------------------------------------- clients


def test_sasl_scram_and_tls_reach_the_aiokafka_options(ca_file: Path) -> None:
    opts = client_options(sasl_settings(ca_file))
    assert opts["bootstrap_servers"] == ["b-1:9096", "b-2:9096"]
    assert opts["security_protocol"] == "SASL_SSL"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-256"
    assert opts["sasl_plain_username"] == "churnwatch"
    assert opts["sasl_plain_password"] == SECRET
    ctx = opts["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ca_subjects(ctx) == ["churnwatch-test-ca"]


def test_tls_alone_and_plaintext(ca_file: Path) -> None:
    tls = client_options(Settings(kafka={"tls": True, "ca_file": str(ca_file)}))
    assert tls["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in tls and "sasl_plain_password" not in tls
    assert ca_subjects(tls["ssl_context"]) == ["churnwatch-test-ca"]
    plain = client_options(Settings())
    assert set(plain) == {"bootstrap_servers"}


def test_the_faust_app_hands_credentials_to_its_kafka_clients(ca_file: Path) -> None:
    settings = sasl_settings(ca_file)
    creds = faust_credentials(settings)
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-256"
    assert auth["sasl_plain_username"] == "churnwatch"
    assert auth["sasl_plain_password"] == SECRET
    assert ca_subjects(auth["ssl_context"]) == ["churnwatch-test-ca"]
    app = create_app(settings, Metrics(CollectorRegistry()))
    assert app.conf.broker_credentials is not None
    producer_auth = app.producer._settings_auth()
    assert producer_auth["security_protocol"] == "SASL_SSL"
    assert producer_auth["sasl_plain_password"] == SECRET
    assert [str(u) for u in app.conf.broker] == ["kafka://b-1:9096", "kafka://b-2:9096"]


# -------------------------------------------------------------------- secrets


def test_secrets_never_show_in_reprs(ca_file: Path) -> None:
    settings = sasl_settings(ca_file).model_copy(update={"pseudonymise_key": KEY})
    settings = Settings.model_validate({**settings.model_dump(), "pseudonymise_key": KEY})
    texts = [
        repr(settings),
        str(settings),
        repr(settings.kafka),
        settings.model_dump_json(),
        repr(client_options(settings)),
        str(client_options(settings)),
        repr(faust_credentials(settings)),
        repr(Pseudonymiser(KEY.encode())),
    ]
    for text in texts:
        assert SECRET not in text
        assert KEY not in text
    assert "**********" in repr(client_options(settings))


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CHURNWATCH_KAFKA__PASWORD": SECRET}, "kafka.pasword"),  # a typo in the name
        ({"CHURNWATCH_KAFKA__PASSWORD": SECRET, "CHURNWATCH_KAFKA__SASL_MECHANISM": "MD5"}, "sasl"),
        ({"CHURNWATCH_PSEUDONYMISE_KEY": "short-" + SECRET[:4]}, "pseudonymise_key"),
    ],
)
def test_settings_errors_do_not_echo_secrets(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert needle in str(err.value)
    assert SECRET not in str(err.value) and SECRET[:4] not in str(err.value)


def test_cli_error_output_does_not_echo_secrets(tmp_path: Path) -> None:
    """The command line with a misspelt password variable and a bad config file value."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[kafka]\nusername = "u"\npassword = "{SECRET}"\nsasl_mechanism = "MD5"\n')
    for env, args in (
        ({"CHURNWATCH_KAFKA__PASWORD": SECRET}, []),
        ({}, ["--config", str(cfg)]),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "streams.cli", "worker", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", **env},
            check=False,
        )
        assert out.returncode == 2, out.stderr[-2000:]
        assert "invalid settings" in out.stderr
        assert SECRET not in out.stdout + out.stderr


# -------------------------------------------------------------------- /metrics


def test_metrics_bind_to_the_chosen_address() -> None:
    port = free_port()
    Metrics(CollectorRegistry()).serve(port, "127.0.0.2")
    with urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5) as resp:  # noqa: S310
        assert b"churnwatch_events_total" in resp.read()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)  # noqa: S310


class ListSink:
    """Every send acknowledged at once; alerts kept."""

    def __init__(self) -> None:
        self.alerts: list[tuple[bytes, bytes]] = []
        self.n = 0

    def _done(self, value: Any) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(value)
        return fut

    async def alert(self, key: bytes, value: bytes) -> asyncio.Future[Any]:
        self.alerts.append((key, value))
        return self._done(None)

    async def dead_letter(self, key: Any, value: Any, headers: Any) -> asyncio.Future[Any]:
        return self._done(None)

    async def changelog(self, partition: int, key: str, value: Any) -> asyncio.Future[Any]:
        self.n += 1
        return self._done(SimpleNamespace(offset=self.n))


def make_pipeline(publish: Any = None) -> tuple[Pipeline, Metrics, ListSink]:
    """An in-process pipeline (2 partitions, event clock)."""
    metrics, sink = Metrics(CollectorRegistry()), ListSink()
    settings = Settings(partitions=2)
    local = LocalStore(SimpleNamespace(data=SimpleNamespace(data={})))
    cfg = PipelineConfig(
        partitions=2, clock="event", input_types={"events": None}, ticks_topic="ticks"
    )
    pipeline = Pipeline(
        cfg,
        settings.engine_config(),
        settings.playbook(),
        local,
        sink,
        metrics,
        lambda: 0,
        publish=publish,
    )
    return pipeline, metrics, sink


def run_pipeline(customers: int, publish: Any = None) -> tuple[Metrics, ListSink, list[dict]]:
    """Simulated customers through an in-process pipeline (2 partitions, event clock)."""
    from detectors import partition_for

    events, _ = generate(SimConfig(customers=customers, days=240, seed=5))
    pipeline, metrics, sink = make_pipeline(publish)
    offsets = [0, 0]
    records = []
    for e in events:
        p = partition_for(e["customer_id"], 2)
        value = json.dumps(e).encode()
        records.append(Record("events", p, offsets[p], e["customer_id"].encode(), value))
        offsets[p] += 1
    records.append(Record("events", 0, offsets[0], None, b"not json"))

    async def go() -> None:
        for i in range(0, len(records), 500):
            await pipeline.handle_batch(records[i : i + 500])
        pipeline.refresh_metrics()

    asyncio.run(go())
    return metrics, sink, events


def series(metrics: Metrics) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in metrics.registry.collect()
        if family.name.startswith("churnwatch_")
        for s in family.samples
    }


def label_bounds() -> dict[str, set[str]]:
    """The finite set each label's values come from (2 partitions, one input topic)."""
    from detectors import LEVELS, REASONS
    from detectors.alerts import KINDS
    from detectors.comeback import GROUP_LABELS
    from detectors.drift import SIGNALS
    from detectors.playbook import DEFAULT_PLAYS
    from detectors.reasons import CATEGORIES

    outcomes = {"processed", "duplicate", "rejected", "error", "redelivered", "dead_lettered"}
    return {
        "partition": {"0", "1"},
        "topic": {"events"},
        "type": {"order", "visit", "ticket", "outcome", "action", "record", "tick", "unknown"},
        "outcome": outcomes | {"refetched"},
        "kind": set(KINDS),
        "level": set(LEVELS),
        "category": set(CATEGORIES) | {"none"},
        "reason": set(REASONS) | {"wrong_partition", "bad_tick", "engine_error"},
        "metric": {"auc", "log_loss", "brier", "weight"},
        "label": {"0", "1", "relabelled"},
        "signal": set(SIGNALS),
        "action": {play.action for play in DEFAULT_PLAYS},
        "returns": set(GROUP_LABELS),
        "check": {"stale_changelog", "restore_mismatch"},
    }


def test_the_comeback_ratio_pools_the_partitions_and_waits_for_a_confirmation() -> None:
    pipeline, metrics, _ = make_pipeline()
    for p, (confirmed, back) in enumerate([(3, 1), (1, 1)]):
        rate = pipeline.partition(p).shard.model.comeback
        for _ in range(confirmed):
            rate.confirmed(5)
        for _ in range(back):
            rate.came_back(5)
    pipeline.refresh_metrics()
    value = metrics.registry.get_sample_value
    assert value("churnwatch_silence_comeback_ratio", {"returns": "5+"}) == 0.5
    assert value("churnwatch_silence_comeback_ratio", {"returns": "0"}) is None


def test_metric_series_do_not_grow_with_customers() -> None:
    """Ten times the customers: every label value still comes from a fixed finite set
    (histogram buckets too), so the series count has a bound that no customer count
    moves; labels without a declared set must not gain values; no customer id is a label.
    """
    small, _, events = run_pipeline(40)
    large, _, _ = run_pipeline(400)
    bounds = label_bounds()
    own = {"churnwatch_events", "churnwatch_records", "churnwatch_partition_records"}

    def bound(family: str, label: str) -> set[str] | None:
        if label == "outcome" and family not in own:
            return None  # another metric's outcomes: held to the no-growth rule below
        return bounds.get(label)

    values: dict[str, dict[tuple[str, str], set[str]]] = {"small": {}, "large": {}}
    for name, metrics in (("small", small), ("large", large)):
        for family in metrics.registry.collect():
            for sample in family.samples:
                for label, value in sample.labels.items():
                    values[name].setdefault((family.name, label), set()).add(value)
    total = 0
    for family in large.registry.collect():
        if not family.name.startswith("churnwatch_"):
            continue
        combos = 1
        for (fam, label), seen in values["large"].items():
            if fam != family.name or label == "le":
                continue
            allowed = bound(fam, label)
            if allowed is not None:
                assert seen <= allowed, f"{fam}{{{label}}}: unbounded values {seen - allowed}"
            else:
                assert seen == values["small"].get((fam, label)), f"{fam}{{{label}}} grows"
            combos *= len(allowed or seen)
        buckets = {s.labels.get("le") for s in family.samples}
        total += combos * (len(buckets) + 2)  # _count, _sum or _created besides buckets
    assert len(series(small)) <= len(series(large)) <= total
    ids = {e["customer_id"] for e in events}
    assert not any(v in ids for _, labels in series(large) for _, v in labels)


# -------------------------------------------------------------------- pseudonyms


def test_pseudonym_is_hmac_sha256_hex() -> None:
    want = hmac.new(KEY.encode(), b"c000123", hashlib.sha256).hexdigest()
    assert pseudonym(KEY.encode(), "c000123") == want
    assert pseudonym(KEY.encode(), "c000123") != pseudonym(b"another-key-of-16-bytes", "c000123")
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonymiser(b"short")


def test_alerts_leave_the_pipeline_pseudonymised() -> None:
    """Same alerts as without a key, but customer id, Kafka key, alert id and trigger are
    keyed hashes; one customer, one pseudonym; no real id anywhere in the output."""
    plain_metrics, plain, events = run_pipeline(60)
    hide = Pseudonymiser(KEY.encode())
    _, masked, _ = run_pipeline(60, publish=hide)
    assert len(masked.alerts) == len(plain.alerts) > 20
    ids = {e["customer_id"] for e in events}
    seen: dict[str, str] = {}
    for (key, value), (_, original) in zip(masked.alerts, plain.alerts, strict=True):
        alert, want = decode_alert(value), hide(decode_alert(original))
        assert value == encode_alert(want)
        assert (
            key.decode() == alert.customer_id == hide.customer(decode_alert(original).customer_id)
        )
        assert seen.setdefault(decode_alert(original).customer_id, alert.customer_id) == (
            alert.customer_id
        )
        assert not any(cid in value.decode() for cid in ids)
    assert len(set(seen.values())) == len(seen)


def test_settings_key_turns_pseudonyms_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.app import pseudonymiser

    assert pseudonymiser(Settings()) is None
    monkeypatch.setenv("CHURNWATCH_PSEUDONYMISE_KEY", KEY)
    hide = pseudonymiser(load_settings())
    assert hide is not None and hide.customer("c1") == pseudonym(KEY.encode(), "c1")
