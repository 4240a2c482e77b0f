"""One contract suite over every detector, and the alert contract of DESIGN.md."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from cw_strategies import DAY, HOUR, T0, ev, feed

from detectors import (
    LEVELS,
    Alert,
    CustomerState,
    Engine,
    EngineConfig,
    Event,
    Order,
    Outcome,
    Shard,
    decode_alert,
    decode_event,
    encode_alert,
)
from detectors.alerts import KINDS, SCHEMA_VERSION, alert_id
from detectors.playbook import DEFAULT_PLAYS, Playbook
from detectors.profile import Population, Profile, profile
from detectors.reasons import CATEGORIES, DETECTORS, Reason, detect

pytestmark = pytest.mark.unit

CODE = re.compile(r"^[a-z][a-z0-9_]*$")


# a catalogue of customers, one or more per detector family -------------------------------


class Builder:
    def __init__(self, cid: str) -> None:
        self.cid, self.n, self.events = cid, 0, []

    def add(self, kind: str, day: float, **fields: object) -> Builder:
        self.n += 1
        self.events.append(
            ev(kind, self.cid, T0 + int(day * DAY), f"{self.cid}-{self.n}", **fields)
        )
        return self

    def order(self, day: float, amount: float = 60.0, **kw: object) -> Builder:
        kw.setdefault("order_id", f"{self.cid}-o{self.n}")
        return self.add("order", day, amount=amount, **kw)

    def monthly(self, n: int, start: float = 0.0, amount: float = 60.0, **kw: object) -> Builder:
        for i in range(n):
            self.order(start + 30 * i + (i % 3) * 0.1, amount, **kw)
        return self

    def visit(self, day: float, intent: str = "browse") -> Builder:
        return self.add("visit", day, intent=intent)

    def ticket(self, day: float, tid: str, status: str, **kw: object) -> Builder:
        return self.add("ticket", day, ticket_id=tid, status=status, **kw)


def catalogue() -> list[tuple[str, list[Event], list[float]]]:
    """(name, events, days at which to look) covering every detector."""
    out = []

    def case(b: Builder, *days: float) -> None:
        out.append((b.cid, b.events, list(days)))

    case(Builder("new").visit(0), 0, 1)
    case(Builder("never_ordered").visit(0).visit(3, "search"), 5, 200)
    case(Builder("one_time").order(0), 1, 150, 400)
    regular = Builder("silent").monthly(8)
    for d in range(0, 210, 9):
        regular.visit(d + 0.5)
    case(regular, 211, 330, 800)
    thinning = Builder("thinning").monthly(3)
    for d in range(0, 60, 2):
        thinning.visit(d + 0.3)
    case(thinning, 61, 130)
    carts = Builder("carts").monthly(4)
    for k, intent in enumerate(("cart", "cart", "inquiry", "checkout", "inquiry")):
        carts.visit(95 + k, intent)
    case(carts, 101, 160)
    browsing = Builder("browsing").monthly(4)
    for k in range(8):
        browsing.visit(92 + 4 * k)
    case(browsing, 125, 140)
    case(
        Builder("unpaid").monthly(3).order(62, status="placed").order(65, status="placed"),
        63,
        70,
    )
    case(
        Builder("unanswered")
        .monthly(3)
        .ticket(61, "t1", "opened", severity="high", category="service")
        .ticket(62, "t2", "opened", severity="critical", category="technical"),
        61.5,
        65,
    )
    case(
        Builder("reopened")
        .monthly(3)
        .ticket(61, "t1", "opened", category="technical")
        .ticket(61.2, "t1", "responded")
        .ticket(62, "t1", "resolved")
        .ticket(64, "t1", "reopened", sentiment=-0.8),
        65,
    )
    case(
        Builder("unhappy")
        .monthly(3)
        .ticket(61, "t1", "opened", category="service")
        .ticket(61.1, "t1", "responded")
        .ticket(62, "t1", "resolved", satisfaction=1),
        63,
    )
    case(
        Builder("negative").monthly(3).ticket(61, "t1", "opened", sentiment=-0.9),
        61.5,
    )
    complaints = Builder("complaints").monthly(3)
    for k in range(3):
        complaints.ticket(61 + k, f"t{k}", "opened", category="account")
        complaints.ticket(61.1 + k, f"t{k}", "responded")
        complaints.ticket(61.5 + k, f"t{k}", "resolved", satisfaction=3)
    case(complaints, 65)
    price = Builder("price").monthly(5, amount=150.0).monthly(4, start=150, amount=30, discount=5.0)
    price.ticket(242, "t1", "opened", category="price").ticket(243, "t1", "resolved")
    case(price, 244, 300)
    quality = Builder("quality").monthly(4)
    quality.ticket(91, "t1", "opened", category="quality").order(92, order_id="x1")
    quality.order(95, order_id="x1", status="returned").order(96, order_id="x1", status="refunded")
    quality.order(97, order_id="x2", status="placed").order(97.5, order_id="x2", status="cancelled")
    case(quality, 98, 130)
    case(Builder("vip").monthly(6, amount=900.0), 151, 200)
    halving = Builder("halving")
    for k in range(60):  # every 10 days for 600 days, then every 25 days at half the basket
        halving.order(10 * k)
    for k in range(5):
        halving.order(615 + 25 * k, amount=30.0)
    case(halving, 717)
    return out


VIP_POPULATION = Population(math.log(45.0), 1.0, 1000.0)


def looks() -> list[tuple[str, CustomerState, Profile]]:
    """Every catalogue customer's state and profile at each look, with a fitted shard."""
    cfg = EngineConfig()
    shard = Shard(cfg)
    cases = catalogue()
    feed(shard, sorted((e for _, events, _ in cases for e in events), key=lambda e: e.ts))
    out = []
    for name, _, days in cases:
        state = shard.store[name]
        pop = VIP_POPULATION if name == "vip" else shard.model.population()
        for day in days:
            out.append((f"{name}@{day}", state, profile(state, T0 + int(day * DAY), cfg, pop)))
    return out


LOOKS = looks()


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.__name__)
def test_detector_contract(detector: Callable[[CustomerState, Profile], Reason | None]) -> None:
    fired = []
    for name, state, prof in LOOKS:
        before = state.to_bytes()
        reason = detector(state, prof)
        assert state.to_bytes() == before, f"{detector.__name__} changed the state of {name}"
        assert detector(state, prof) == reason, "detectors are deterministic"
        if reason is None:
            continue
        fired.append(name)
        assert isinstance(reason, Reason)
        assert CODE.match(reason.code), reason.code
        assert reason.category in CATEGORIES
        assert isinstance(reason.message, str) and reason.message.strip()
        assert math.isfinite(reason.weight) and reason.weight >= 0
        if reason.category != "value":
            assert reason.weight > 0, f"{reason.code} explains risk but pushes nothing"
    assert fired, f"{detector.__name__} never fired on the catalogue: add a customer for it"


def test_detect_lists_reasons_strongest_first_with_stable_categories() -> None:
    category_of: dict[str, str] = {}
    for name, state, prof in LOOKS:
        found = detect(state, prof)
        weights = [r.weight for r in found]
        assert weights == sorted(weights, reverse=True), name
        codes = [r.code for r in found]
        assert len(codes) == len(set(codes)), name
        for r in found:
            assert category_of.setdefault(r.code, r.category) == r.category, r.code


def test_catalogue_reaches_every_family_and_the_expected_codes() -> None:
    seen = defaultdict(set)
    for name, state, prof in LOOKS:
        for r in detect(state, prof):
            seen[name.split("@")[0]].add(r.code)
    assert "no_first_order" in seen["never_ordered"]
    assert "no_second_order" in seen["one_time"]
    assert "order_overdue" in seen["silent"]
    assert "visits_declining" in seen["thinning"]
    assert "not_converting" in seen["carts"]
    assert "browsing_not_buying" in seen["browsing"]
    assert "order_unpaid" in seen["unpaid"]
    assert {"ticket_unanswered", "severe_ticket_open"} <= seen["unanswered"]
    assert "ticket_reopened" in seen["reopened"]
    assert "low_satisfaction" in seen["unhappy"]
    assert "negative_sentiment" in seen["negative"]
    assert "repeat_complaints" in seen["complaints"]
    assert {"price_complaint", "discount_reliant", "basket_declining"} <= seen["price"]
    assert {"quality_complaint", "returns_cancels"} <= seen["quality"]
    assert "high_value" in seen["vip"]
    assert "spend_halved" in seen["halving"]
    assert seen["new"] == set()


def test_playbook_codes_are_codes_the_detectors_give() -> None:
    produced = {r.code for _, state, prof in LOOKS for r in detect(state, prof)}
    referenced = {code for play in DEFAULT_PLAYS for code in play.codes}
    assert referenced <= produced


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_has_an_action_at_the_top_level(category: str) -> None:
    actions = Playbook().actions([Reason("x", category, "m", 1.0)], level=3)
    assert actions
    assert all(a.priority >= 1 for a in actions)


# alerts ----------------------------------------------------------------------------------

CONTRACT_FIELDS = {
    "schema_version",
    "alert_id",
    "customer_id",
    "kind",
    "risk_level",
    "previous_level",
    "risk_score",
    "as_of",
    "emitted_at",
    "reasons",
    "actions",
    "customer_value",
    "value_at_risk",
    "model_version",
    "trigger",
    "treatment",
}


def simulated_alerts() -> tuple[list[Event], list[Alert]]:
    from streams.simulate import SimConfig, generate

    raw, _ = generate(SimConfig(customers=120, days=365, seed=5))
    events = [decode_event(json.dumps(e).encode()) for e in raw]
    engine = Engine(EngineConfig(), partitions=2)
    alerts = [a for e in events for a in engine.feed(e)]
    alerts += engine.advance_all(int(events[-1].ts) + DAY)
    return events, alerts


@pytest.fixture(scope="module")
def run() -> tuple[list[Event], list[Alert]]:
    return simulated_alerts()


def _time(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert dt.tzinfo is not None and dt.utcoffset() == timedelta(0)
    return dt


def test_alerts_round_trip_and_carry_every_contract_field(
    run: tuple[list[Event], list[Alert]],
) -> None:
    events, alerts = run
    assert len(alerts) > 20
    trigger_ids = {e.event_id for e in events} | {"sweep"}
    for alert in alerts:
        data = encode_alert(alert)
        assert decode_alert(data) == alert
        obj = json.loads(data)
        assert CONTRACT_FIELDS <= set(obj)
        assert obj["schema_version"] == SCHEMA_VERSION == 1
        assert str(uuid.UUID(obj["alert_id"])) == obj["alert_id"]
        assert obj["kind"] in KINDS
        assert obj["risk_level"] in LEVELS and obj["previous_level"] in LEVELS
        assert 0.0 <= obj["risk_score"] <= 1.0
        _time(obj["as_of"]), _time(obj["emitted_at"])
        assert obj["trigger"] in trigger_ids
        assert obj["treatment"] in ("treated", "control")
        assert isinstance(obj["model_version"], str) and obj["model_version"]
        assert obj["customer_value"] >= 0 and obj["value_at_risk"] >= 0
        for reason in obj["reasons"]:
            assert set(reason) == {"code", "category", "message", "weight"}
            assert reason["category"] in CATEGORIES
        weights = [r["weight"] for r in obj["reasons"]]
        assert weights == sorted(weights, reverse=True)
        for action in obj["actions"]:
            assert set(action) == {"action", "channel", "priority"}
        if obj["kind"] == "resolved":
            assert obj["reasons"] == [] and obj["risk_level"] == "low"
        if obj["kind"] == "opened":
            assert obj["reasons"], "an alert opens only with a reason behind it"
            assert obj["actions"], "and with something to do about it"


def test_alert_json_is_stable_under_re_encoding(run: tuple[list[Event], list[Alert]]) -> None:
    """Decoding an alert and encoding it again gives the same bytes, so a consumer that
    re-publishes or hashes alerts sees one value. Numbers declared float are always floats
    (a customer with no spend yet must say ``"customer_value":0.0``, not ``0``)."""
    for alert in run[1]:
        assert isinstance(alert.customer_value, float), (alert.customer_id, alert.customer_value)
        assert isinstance(alert.value_at_risk, float)
        data = encode_alert(alert)
        assert encode_alert(decode_alert(data)) == data


def test_alert_lifecycle_per_customer_is_consistent(
    run: tuple[list[Event], list[Alert]],
) -> None:
    """Levels chain, kinds match the move, no flapping inside the cooldown, and ``resolved``
    means the customer recovered (DESIGN.md: "resolved is sent when an alerted customer
    recovers"; DOMAIN.md: recovered = came back and ordered again)."""
    events, alerts = run
    by_id = {e.event_id: e for e in events}

    def recovery(trigger: str) -> bool:
        e = by_id.get(trigger)
        return (isinstance(e, Order) and e.status == "paid") or (
            isinstance(e, Outcome) and e.outcome == "retained"
        )

    cooldown = timedelta(days=EngineConfig().cooldown_days)
    by_customer: dict[str, list[Alert]] = defaultdict(list)
    for alert in alerts:
        by_customer[alert.customer_id].append(alert)
    kinds_seen = set()
    for cid, mine in by_customer.items():
        level, last, open_ = "low", None, False
        for a in mine:
            kinds_seen.add(a.kind)
            rank, prev = LEVELS.index(a.risk_level), LEVELS.index(a.previous_level)
            assert a.previous_level == level, cid
            if last is not None:
                assert _time(a.as_of) >= last, cid
            waited = None if last is None else _time(a.as_of) - last
            if a.kind == "opened":
                assert not open_ and rank >= 1
                assert waited is None or waited >= cooldown, f"{cid} re-opened within cooldown"
            elif a.kind == "escalated":
                assert open_ and rank > prev
            elif a.kind == "deescalated":
                assert open_ and 1 <= rank < prev
                assert waited >= cooldown or recovery(a.trigger), f"{cid} flapped down"
            else:
                assert open_ and rank == 0
                assert recovery(a.trigger), f"{cid} resolved by {a.trigger} without recovering"
            open_ = a.kind != "resolved"
            level, last = a.risk_level, _time(a.as_of)
    assert {"opened", "escalated", "resolved"} <= kinds_seen


def test_alert_ids_are_deterministic_and_unique(run: tuple[list[Event], list[Alert]]) -> None:
    _, alerts = run
    ids = [a.alert_id for a in alerts]
    assert len(set(ids)) == len(ids)
    _, again = simulated_alerts()
    assert [a.alert_id for a in again] == ids
    assert [encode_alert(a) for a in again] == [encode_alert(a) for a in alerts]


def test_alert_id_depends_on_every_part_of_the_transition() -> None:
    base = ("c1", 3, "escalated", 2, T0)
    assert alert_id(*base) == alert_id(*base)
    variants = [
        ("c2", 3, "escalated", 2, T0),
        ("c1", 4, "escalated", 2, T0),
        ("c1", 3, "opened", 2, T0),
        ("c1", 3, "escalated", 3, T0),
        ("c1", 3, "escalated", 2, T0 + HOUR),
    ]
    assert len({alert_id(*v) for v in variants} | {alert_id(*base)}) == len(variants) + 1
