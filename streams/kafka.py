"""Connection options for plain aiokafka clients and for Faust, from the one Settings.

TLS is on whenever SASL credentials are given; the password stays a
``SecretStr`` until the moment a client is built and is never logged.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust

from streams.settings import Settings


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
