"""The rebalance livelock of the embedded broker, with plain group requests, and our way round it.

tansu 0.6 removes a member that sends LeaveGroup while its group is forming but keeps
it as the group's leader: the members left are told to follow a leader that is gone,
rejoin and fail to sync forever. A member that stops without leaving is evicted after
its session timeout, which clears the leader, and the group forms.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.coordination import FindCoordinatorRequest
from aiokafka.protocol.group import JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest

from streams.broker import EmbeddedBroker
from streams.kafka import leaves_group_on_stop
from streams.settings import Settings

pytestmark = pytest.mark.integration

SESSION_MS = 2000
MEMBER_ID_REQUIRED = 79
REBALANCE_IN_PROGRESS = 27
PROTOCOLS = [("range", b"\x00\x00\x00\x00\x00\x00\x00\x00")]


async def leader_gone_while_forming(bootstrap: str, leave: bool) -> list[tuple[str, int]]:
    """A leads a group, B starts joining, A stops (with or without LeaveGroup); then
    B rejoins and syncs three times, a session timeout apart. Returns, per round,
    whom the coordinator names leader ("A", "B" or "?") and B's sync error code."""
    group = f"g-{uuid.uuid4().hex[:8]}"
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        found = await client.send(client.get_random_node(), FindCoordinatorRequest(group, 0))
        node = found.coordinator_id

        async def join(member: str) -> Any:
            timeouts = (SESSION_MS, SESSION_MS)
            req = JoinGroupRequest(group, *timeouts, member, None, "consumer", PROTOCOLS)
            return await client.send(node, req)

        first = await join("")
        assert first.error_code == MEMBER_ID_REQUIRED
        a = await join(first.member_id)
        assert a.leader_id == a.member_id
        b_first = await join("")  # B arrives: the group is forming, A still its leader
        assert b_first.error_code == MEMBER_ID_REQUIRED
        if leave:
            gone = await client.send(node, LeaveGroupRequest(group, a.member_id))
            assert gone.error_code == 0
        rounds = []
        for _ in range(3):
            b = await join(b_first.member_id)
            sync = await client.send(
                node, SyncGroupRequest(group, b.generation_id, b.member_id, None, [])
            )
            who = {a.member_id: "A", b.member_id: "B"}.get(b.leader_id, "?")
            rounds.append((who, sync.error_code))
            await asyncio.sleep(SESSION_MS / 1000 * 1.5)
        return rounds
    finally:
        await client.close()


def test_a_leader_that_leaves_a_forming_group_stays_its_leader(broker: EmbeddedBroker) -> None:
    """The broker defect itself: long after A left, B is still told A leads."""
    rounds = asyncio.run(leader_gone_while_forming(broker.bootstrap, leave=True))
    assert rounds == [("A", REBALANCE_IN_PROGRESS)] * 3


def test_a_leader_that_stops_without_leaving_is_evicted_and_replaced(
    broker: EmbeddedBroker,
) -> None:
    """What our consumers do on this broker: after the session timeout B leads."""
    rounds = asyncio.run(leader_gone_while_forming(broker.bootstrap, leave=False))
    assert rounds[0][0] == "A"
    assert rounds[-1][0] == "B"


def test_consumers_skip_leave_group_on_the_embedded_broker_only(broker: EmbeddedBroker) -> None:
    auto = Settings(broker=broker.bootstrap)
    assert asyncio.run(leaves_group_on_stop(auto)) is False
    forced = Settings(broker=broker.bootstrap, leave_group_on_stop=True)
    assert asyncio.run(leaves_group_on_stop(forced)) is True
