"""``churnwatch worker``: check the topics, serve /metrics, run the Faust worker."""

from __future__ import annotations

import asyncio
import logging

import faust
from aiokafka.errors import KafkaConnectionError

from streams.app import create_app
from streams.kafka import leaves_group_on_stop, set_leave_group_on_stop
from streams.metrics import Metrics
from streams.settings import Settings
from streams.topics import TopicError, check_copartitioned, create_topics, worker_topics

log = logging.getLogger(__name__)


async def prepare_topics(settings: Settings, create: bool) -> None:
    """Create the worker's missing topics (optional), check co-partitioning, and
    choose whether the worker leaves its group when it stops."""
    try:
        if create:
            await create_topics(settings, only=worker_topics(settings) | _outputs(settings))
        await check_copartitioned(settings)
        leave = await leaves_group_on_stop(settings)
        set_leave_group_on_stop(leave)
        if not leave:
            log.info("no LeaveGroup on stop: the group evicts this worker after its session")
    except KafkaConnectionError as exc:  # a plain message; the error names hosts only
        raise TopicError(f"cannot reach the brokers {settings.broker}: {exc}") from None


def _outputs(settings: Settings) -> set[str]:
    return {settings.topic("alerts"), settings.topic("dlq")}


class Worker(faust.Worker):
    """Faust's worker with the log level applied to every library logger.

    After Faust's logging set-up, aiokafka's loggers are still enabled for DEBUG,
    and building their debug records costs more than our per-event work.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        level = level or logging.WARNING
        logger.setLevel(level)
        for name in ("aiokafka", "faust", "mode", "kafka"):
            logging.getLogger(name).setLevel(level)


def run_worker(settings: Settings, create: bool = True) -> None:
    """Run until SIGINT/SIGTERM. Raises :class:`~streams.topics.TopicError` before starting."""
    asyncio.run(prepare_topics(settings, create))
    asyncio.set_event_loop(asyncio.new_event_loop())
    metrics = Metrics()
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port, settings.metrics_host)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    app = create_app(settings, metrics)
    worker = Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
