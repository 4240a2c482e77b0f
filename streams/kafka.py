"""Connection options for plain aiokafka clients and for Faust, from the one Settings.

TLS is on whenever SASL credentials are given; the password stays a
``SecretStr`` until the moment a client is built and is never logged.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer.group_coordinator import GroupCoordinator

from streams.settings import Settings

log = logging.getLogger(__name__)

TANSU_CLUSTER_ID = "tansu_cluster"
"""The cluster id of a tansu broker (the embedded broker) left at its default."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.kafka.use_tls:
        return None
    ca = str(settings.kafka.ca_file) if settings.kafka.ca_file else None
    return ssl.create_default_context(cafile=ca)


class ClientOptions(dict[str, Any]):
    """aiokafka keyword arguments whose repr (and str) hides the SASL password."""

    HIDDEN = ("sasl_plain_password",)

    def __repr__(self) -> str:
        shown = {k: ("**********" if k in self.HIDDEN and v else v) for k, v in self.items()}
        return f"ClientOptions({shown!r})"

    __str__ = __repr__


def client_options(settings: Settings) -> ClientOptions:
    """Keyword arguments for aiokafka producers, consumers and admin clients."""
    opts = ClientOptions(bootstrap_servers=settings.bootstrap())
    k = settings.kafka
    ctx = ssl_context(settings)
    if k.username is not None:
        opts.update(
            security_protocol="SASL_SSL",
            sasl_mechanism=k.sasl_mechanism,
            sasl_plain_username=k.username,
            sasl_plain_password=k.password.get_secret_value() if k.password else "",
            ssl_context=ctx,
        )
    elif ctx is not None:
        opts.update(security_protocol="SSL", ssl_context=ctx)
    return opts


def faust_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    k = settings.kafka
    ctx = ssl_context(settings)
    if k.username is not None:
        return faust.SASLCredentials(
            username=k.username,
            password=k.password.get_secret_value() if k.password else "",
            mechanism=k.sasl_mechanism,
            ssl_context=ctx,
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


async def cluster_id(settings: Settings) -> str | None:
    """The brokers' cluster id (Metadata v2+), ``None`` if they do not report one."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        found = (await admin.describe_cluster()).get("cluster_id")
    finally:
        await admin.close()
    return str(found) if found else None


async def leaves_group_on_stop(settings: Settings) -> bool:
    """Whether consumers should send LeaveGroup when they stop: the setting, or by
    default everywhere but on a tansu broker (see :func:`set_leave_group_on_stop`)."""
    if settings.leave_group_on_stop is not None:
        return settings.leave_group_on_stop
    return await cluster_id(settings) != TANSU_CLUSTER_ID


def set_leave_group_on_stop(enabled: bool) -> None:
    """Make every aiokafka group member of this process leave (or not) when it stops.

    tansu 0.6's group coordinator removes a member that leaves while the group is
    forming but keeps it as the group's leader, so the members left rejoin forever
    and none gets a partition (``tests/integration/test_group_leave.py`` shows it
    with plain requests). A member that stops without leaving is evicted after the
    session timeout, and an eviction does clear the leader: the group then forms.
    """
    cls: Any = GroupCoordinator
    cls.churnwatch_leave_on_stop = enabled
    if getattr(cls, "churnwatch_leave_patched", False):
        return
    leave = cls._maybe_leave_group

    async def maybe_leave_group(self: Any) -> None:
        if cls.churnwatch_leave_on_stop:
            await leave(self)
        else:  # what aiokafka does after its LeaveGroup, without it
            self.reset_generation()

    cls._maybe_leave_group = maybe_leave_group
    cls.churnwatch_leave_patched = True
