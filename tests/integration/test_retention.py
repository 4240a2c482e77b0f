"""The retention ledger on a real broker: alerts carry their treatment arm, a worker reads
``retention-actions`` and links the reports to cases, and /metrics shows them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SHARE = {"medium": 0.5, "high": 0.5, "critical": 0.5}


def test_worker_links_retention_actions_and_alerts_carry_treatment(
    stack, events_file: Path, kit
) -> None:
    expected = kit.replay_alerts(events_file, partitions=3, engine={"control_share": SHARE})
    port = kit.free_port()
    stack.create_topics()
    env = {f"CHURNWATCH_ENGINE__CONTROL_SHARE__{k.upper()}": str(v) for k, v in SHARE.items()}
    stack.start_worker("--clock", "event", "--metrics-port", str(port), **env)
    stack.produce(events_file.read_bytes().splitlines())
    got = stack.alerts(len(expected), timeout=90)
    assert kit.comparable(got) == kit.comparable(expected)
    assert {a["treatment"] for a in got} == {"treated", "control"}

    # marketing reports on each customer's current case (the last one opened)
    current: dict[str, dict] = {}
    for alert in got:
        if alert["kind"] == "opened":
            current[alert["customer_id"]] = alert
    treated = [a for a in current.values() if a["treatment"] == "treated"][:15]
    control = [a for a in current.values() if a["treatment"] == "control"][:3]
    assert len(treated) >= 5 and control

    def report(alert: dict, status: str, action: str | None = None) -> bytes:
        # no event_type: the topic's default type is "action"; no event_id: derived
        return json.dumps(
            {
                "alert_id": alert["alert_id"],
                "customer_id": alert["customer_id"],
                "action": action or alert["actions"][0]["action"],
                "status": status,
                "ts": alert["as_of"],
            }
        ).encode()

    records = [report(a, s) for a in treated for s in ("sent", "delivered")]
    records += [report(a, "sent") for a in control]
    records.append(report({**treated[0], "customer_id": "nobody-we-know"}, "sent"))
    records.append(records[0])  # a redelivery: dropped
    stack.produce(records, topic=stack.settings.topic("actions"))

    total = len(treated) * 2 + len(control) + 1

    def linked() -> bool:
        text = kit.scrape(port)
        return kit.metric(text, "churnwatch_retention_action_links_total") >= total

    assert kit.wait_for(linked, timeout=60)
    text = kit.scrape(port)
    assert kit.metric(text, "churnwatch_retention_actions_total") == total
    assert kit.metric(text, "churnwatch_retention_actions_total", status="delivered") == len(
        treated
    )
    assert kit.metric(text, "churnwatch_retention_action_links_total", link="linked") == 2 * len(
        treated
    )
    assert kit.metric(text, "churnwatch_retention_action_links_total", link="control") == len(
        control
    )
    assert kit.metric(text, "churnwatch_retention_action_links_total", link="unknown_customer") == 1
    assert kit.metric(text, "churnwatch_events_total", type="action", outcome="duplicate") == 1
    assert kit.metric(text, "churnwatch_events_total", type="action", outcome="processed") == total
    opened = sum(1 for a in got if a["kind"] == "opened")
    assert kit.metric(text, "churnwatch_cases_opened_total") == opened
    assert kit.metric(text, "churnwatch_cases_opened_total", treatment="control") > 0
    assert kit.metric(text, "churnwatch_cases_total") > 0
    assert "customer_id" not in text
