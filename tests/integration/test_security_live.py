"""Security on a real broker: pseudonymous alerts from a worker, and a worker given SASL
credentials that cannot connect says so without printing the password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detectors import decode_alert, encode_alert
from streams.privacy import Pseudonymiser

pytestmark = pytest.mark.integration

KEY = "integration-pseudonym-key-0001"
SECRET = "w0rker-s3cret-Pa55"  # noqa: S105 - a test secret


def test_worker_sends_pseudonymous_alerts(stack, events_file: Path, kit) -> None:
    """With CHURNWATCH_PSEUDONYMISE_KEY set the worker's alerts are replay's alerts with
    customer id, Kafka key, alert id and trigger keyed: one customer, one pseudonym."""
    hide = Pseudonymiser(KEY.encode())
    expected = kit.replay_alerts(events_file, partitions=3)
    want = [json.loads(encode_alert(hide(decode_alert(json.dumps(a).encode())))) for a in expected]
    stack.create_topics()
    stack.start_worker("--clock", "event", CHURNWATCH_PSEUDONYMISE_KEY=KEY)
    stack.produce(events_file.read_bytes().splitlines())
    got = stack.collect("alerts", lambda recs: len(recs) >= len(expected), timeout=90)
    alerts = [json.loads(value) for _, value, _, _ in got]
    assert kit.comparable(alerts) == kit.comparable(want)
    real = {json.loads(line)["customer_id"] for line in events_file.read_bytes().splitlines()}
    for key, value, _, _ in got:
        assert key.decode() == json.loads(value)["customer_id"]
        assert not any(cid in value.decode() for cid in real)
    pseudonyms = {a["customer_id"]: hide.customer(a["customer_id"]) for a in expected}
    assert len(set(pseudonyms.values())) == len(pseudonyms)
    assert {a["customer_id"] for a in alerts} == set(pseudonyms.values())


def test_worker_never_prints_the_sasl_password(tmp_path: Path, kit) -> None:
    """A worker with SASL credentials whose brokers cannot be reached (debug logging)
    stops with a plain message that does not show the password."""
    import subprocess
    import sys

    port = kit.free_port()  # nothing listens there
    env = {
        "PATH": "/usr/bin:/bin",
        "CHURNWATCH_BROKER": f"127.0.0.1:{port}",
        "CHURNWATCH_KAFKA__USERNAME": "churnwatch",
        "CHURNWATCH_KAFKA__PASSWORD": SECRET,
        "CHURNWATCH_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "CHURNWATCH_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker", "--log-level", "debug"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "cannot reach the brokers" in out
    assert SECRET not in out
