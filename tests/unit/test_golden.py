"""Golden streams: seeded customer histories replayed through the engine, compared exactly,
plus what each scenario must show whatever the exact numbers (tests/data/golden/)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from datetime import datetime, timedelta
from types import ModuleType

import pytest

from detectors import Alert, EngineConfig, Order, decode_event
from detectors.reasons import CADENCE_CODES, Reason

pytestmark = pytest.mark.unit

NAMES = [
    "silent_monthly",
    "service_unanswered",
    "low_satisfaction",
    "price_pressure",
    "returns_and_cancels",
    "carts_without_orders",
    "placed_not_paid",
    "recovers",
    "one_time_buyer",
    "healthy",
]
CFG = EngineConfig(risk_target="lapse")
"""The golden streams pin the win-back view: every silence past the rhythm alarms."""


class Run:
    """One replayed golden scenario."""

    def __init__(self, golden: ModuleType, name: str) -> None:
        self.name = name
        self.lines = golden.events_path(name).read_bytes().splitlines()
        self.expected = json.loads(golden.expected_path(name).read_text(encoding="utf-8"))
        self.end = parse(self.expected["end"])
        self.events = [decode_event(line) for line in self.lines]
        self.alerts: list[Alert] = golden.replay(self.lines, ms(self.end))
        self.summaries = [golden.summary(a) for a in self.alerts]

    @property
    def paid(self) -> list[Order]:
        return [e for e in self.events if isinstance(e, Order) and e.status == "paid"]

    def days_after_last_paid(self, alert: Alert) -> float:
        before = [e.ts for e in self.paid if e.ts <= ms(parse(alert.as_of))]
        return (ms(parse(alert.as_of)) - max(before)) / 86_400_000

    def median_gap_days(self) -> float:
        ts = [e.ts for e in self.paid]
        return statistics.median(b - a for a, b in zip(ts, ts[1:], strict=False)) / 86_400_000


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ms(dt: datetime) -> int:
    return (dt - datetime.fromisoformat("1970-01-01T00:00:00+00:00")) // timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def runs(golden: ModuleType) -> dict[str, Run]:
    return {name: Run(golden, name) for name in NAMES}


def test_every_scenario_has_its_files_and_nothing_else(golden: ModuleType) -> None:
    assert sorted(golden.SCENARIOS) == sorted(NAMES)
    files = {p.name for p in golden.HERE.iterdir() if p.suffix in (".json", ".jsonl")}
    expected = {f"{n}.events.jsonl" for n in NAMES} | {f"{n}.expected.json" for n in NAMES}
    assert files == expected


@pytest.mark.parametrize("name", NAMES)
def test_golden_inputs_are_what_the_script_builds(golden: ModuleType, name: str) -> None:
    events, end_ms = golden.SCENARIOS[name]()
    text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
    assert golden.events_path(name).read_text(encoding="utf-8") == text
    assert json.loads(golden.expected_path(name).read_text(encoding="utf-8"))["end"] == (
        golden.iso(end_ms)
    )


@pytest.mark.parametrize("name", NAMES)
def test_golden_stream_gives_exactly_the_expected_alerts(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    assert run.events, "every golden file has events"
    assert run.summaries == run.expected["alerts"]


@pytest.mark.parametrize("name", NAMES)
def test_golden_alerts_form_a_valid_lifecycle(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    level, last, first_ts = "low", None, min(e.ts for e in run.events)
    for a in run.alerts:
        when = parse(a.as_of)
        assert ms(when) >= first_ts
        assert last is None or when >= last
        assert a.previous_level == level
        assert a.customer_id == run.events[0].customer_id
        level, last = a.risk_level, when


# what each scenario must show -----------------------------------------------------------


def cause(alert: Alert) -> Reason:
    """The strongest reason beyond mere lateness (cadence reasons say *that* a customer is
    late, the others say *why*)."""
    return next(r for r in alert.reasons if r.code not in CADENCE_CODES)


def sooner_than_silence(run: Run, runs: dict[str, Run]) -> None:
    """A customer who shows a cause is flagged at fewer usual gaps of silence than one who
    simply goes quiet."""
    silent = runs["silent_monthly"]
    quiet = silent.days_after_last_paid(silent.alerts[0]) / silent.median_gap_days()
    here = run.days_after_last_paid(run.alerts[0]) / run.median_gap_days()
    assert here < quiet


def _silent_monthly(run: Run, runs: dict[str, Run]) -> None:
    gap = run.median_gap_days()
    assert 25 < gap < 35
    assert all(a.trigger == "sweep" for a in run.alerts), "only sweeps can see silence"
    first = run.alerts[0]
    assert first.kind == "opened"
    assert first.reasons[0].code == "order_overdue"
    assert first.reasons[0].category == "engagement"
    assert run.days_after_last_paid(first) >= 1.5 * gap, "no alert before ~1.5x the usual gap"
    assert run.days_after_last_paid(first) <= 3.0 * gap, "but well before a quarter of silence"
    assert "escalated" in [a.kind for a in run.alerts]
    assert not {"deescalated", "resolved"} & {a.kind for a in run.alerts}


def _service(run: Run, runs: dict[str, Run]) -> None:
    first = run.alerts[0]
    codes = [r.code for r in first.reasons]
    assert first.kind == "opened"
    assert first.reasons[0].category == "service"
    assert "ticket_unanswered" in codes
    assert not set(codes) & CADENCE_CODES, "mid-cycle: the service issue alone raised it"
    severe = next(e for e in run.events if getattr(e, "severity", None) == "high")
    waited = ms(parse(first.as_of)) - severe.ts
    sla = int(CFG.response_sla_hours * 3_600_000)
    assert first.trigger == "sweep" and sla < waited <= sla + 3_600_000
    # nobody ever answers the ticket and the customer does nothing: nothing has recovered
    answered = [e for e in run.events if getattr(e, "ticket_id", None) == severe.ticket_id]
    assert [e.status for e in answered] == ["opened"]
    assert "resolved" not in [a.kind for a in run.alerts], (
        "resolved while the high-severity ticket is still unanswered"
    )


def _low_satisfaction(run: Run, runs: dict[str, Run]) -> None:
    first = run.alerts[0]
    assert cause(first).code == "low_satisfaction"
    assert cause(first).category == "service"
    sooner_than_silence(run, runs)


def _price(run: Run, runs: dict[str, Run]) -> None:
    first = run.alerts[0]
    assert cause(first).category == "price"
    assert {"price_complaint", "basket_declining"} <= {r.code for r in first.reasons}
    sooner_than_silence(run, runs)


def _returns(run: Run, runs: dict[str, Run]) -> None:
    first = run.alerts[0]
    assert cause(first).category == "product"
    assert "returns_cancels" in {r.code for r in first.reasons}
    sooner_than_silence(run, runs)


def _carts(run: Run, runs: dict[str, Run]) -> None:
    first = run.alerts[0]
    assert cause(first).code == "not_converting"
    assert cause(first).category == "engagement"
    sooner_than_silence(run, runs)


def _unpaid(run: Run, runs: dict[str, Run]) -> None:
    first = run.alerts[0]
    assert cause(first).code == "order_unpaid"
    sooner_than_silence(run, runs)


def _recovers(run: Run, runs: dict[str, Run]) -> None:
    kinds = [a.kind for a in run.alerts]
    assert kinds[0] == "opened" and kinds[-1] == "resolved"
    resolved = run.alerts[-1]
    back = next(e for e in run.paid if e.event_id == resolved.trigger)
    assert ms(parse(resolved.as_of)) == back.ts, "resolved at once by the returning order"
    assert resolved.reasons == [] and resolved.risk_level == "low"
    assert run.paid[-1].ts > back.ts, "and the orders after it raise nothing new"


def _one_time(run: Run, runs: dict[str, Run]) -> None:
    assert run.alerts and all("no_second_order" in [r.code for r in a.reasons] for a in run.alerts)
    assert len(run.paid) == 1
    assert run.days_after_last_paid(run.alerts[0]) >= 1.5 * CFG.prior_gap_days - 1e-6


def _healthy(run: Run, runs: dict[str, Run]) -> None:
    assert run.alerts == []
    assert len(run.paid) >= 12


SEMANTICS: dict[str, Callable[[Run, dict[str, Run]], None]] = {
    "silent_monthly": _silent_monthly,
    "service_unanswered": _service,
    "low_satisfaction": _low_satisfaction,
    "price_pressure": _price,
    "returns_and_cancels": _returns,
    "carts_without_orders": _carts,
    "placed_not_paid": _unpaid,
    "recovers": _recovers,
    "one_time_buyer": _one_time,
    "healthy": _healthy,
}


@pytest.mark.parametrize("name", NAMES)
def test_golden_scenario_means_what_it_says(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    if name != "healthy":
        assert run.alerts, f"{name} raised no alert"
    SEMANTICS[name](run, runs)
