"""Every topic the pipeline uses, how to create them, and the co-partitioning check.

Input topics, the tick topic and the changelogs all have ``settings.partitions``
partitions: a customer's events, state and sweeps live in the same partition
number everywhere. Changelogs are compacted.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from detectors import ChurnwatchError
from streams.kafka import client_options
from streams.settings import Settings

STATE_TABLE = "customer-state"
TOPIC_ALREADY_EXISTS = 36


class TopicError(ChurnwatchError):
    """Topics are missing or not co-partitioned."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compact: bool = False
    copartitioned: bool = True
    """Must have exactly ``settings.partitions`` partitions (state lives by partition)."""
    retention_ms: int | None = None
    """Delete records older than this (with ``compact``: ``compact,delete``)."""

    def new_topic(self) -> NewTopic:
        configs = {"cleanup.policy": "compact"} if self.compact else {}
        if self.retention_ms is not None:
            policy = "compact,delete" if self.compact else "delete"
            configs = {"cleanup.policy": policy, "retention.ms": str(self.retention_ms)}
        return NewTopic(self.name, self.partitions, 1, topic_configs=configs)


def input_roles(settings: Settings) -> list[str]:
    roles = list(settings.inputs)
    if settings.read_outcomes:
        roles.append("outcomes")
    if settings.read_actions:
        roles.append("actions")
    return roles


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """All topics of one deployment, inputs and changelogs first."""
    n = settings.partitions
    every = ["events", "orders", "visits", "tickets", "outcomes", "actions", "ticks"]
    specs = [TopicSpec(settings.topic(role), n) for role in every]
    specs += [
        TopicSpec(settings.changelog(STATE_TABLE), n, compact=True),
        TopicSpec(settings.topic("alerts"), n, copartitioned=False),
        TopicSpec(settings.topic("dlq"), n, copartitioned=False),
        TopicSpec(settings.topic("webhook_dlq"), n, copartitioned=False),
        TopicSpec(
            settings.topic("webhook_acks"),
            n,
            compact=True,
            copartitioned=False,
            retention_ms=int(settings.webhook.dedupe_days * 86_400_000),
        ),
    ]
    return specs


def worker_topics(settings: Settings) -> set[str]:
    """The topics a worker reads or writes state to: these must be co-partitioned."""
    names = {settings.topic(role) for role in [*input_roles(settings), "ticks"]}
    names.add(settings.changelog(STATE_TABLE))
    return names


async def create_topics(settings: Settings, only: set[str] | None = None) -> dict[str, str]:
    """Create the missing topics; returns ``{name: "created" | "exists"}``.

    Never asks the broker to describe a topic that does not exist: tansu (and
    brokers with ``auto.create.topics.enable``) would create it with the
    default partition count.
    """
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        specs = [s for s in topic_specs(settings) if only is None or s.name in only]
        result = {s.name: "exists" for s in specs if s.name in existing}
        todo = [s for s in specs if s.name not in existing]
        if todo:
            response = await admin.create_topics([s.new_topic() for s in todo])
            for name, code, message in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise TopicError(f"cannot create topic {name}: {message} (error {code})")
                result[name] = "created" if code == 0 else "exists"
        return result
    finally:
        await admin.close()


async def partition_counts(settings: Settings, names: set[str]) -> dict[str, int | None]:
    """Partition count of each topic, ``None`` when it does not exist."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = sorted(names & existing)
        counts: dict[str, int | None] = dict.fromkeys(names)
        if present:
            for meta in await admin.describe_topics(present):
                counts[meta["topic"]] = len(meta["partitions"])
        return counts
    finally:
        await admin.close()


async def check_copartitioned(settings: Settings) -> None:
    """Raise :class:`TopicError` unless every worker topic has ``settings.partitions``."""
    counts = await partition_counts(settings, worker_topics(settings))
    missing = sorted(name for name, n in counts.items() if n is None)
    n_want = settings.partitions
    wrong = sorted(f"{name} has {n}" for name, n in counts.items() if n and n != n_want)
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if wrong:
        problems.append("wrong partition count: " + ", ".join(wrong))
    if problems:
        raise TopicError(
            f"topics are not co-partitioned (all need {settings.partitions} partitions; "
            f"{'; '.join(problems)}). Run `churnwatch topics create --partitions "
            f"{settings.partitions}` or set --partitions to the topics' count."
        )
