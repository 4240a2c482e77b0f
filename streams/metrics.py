"""Prometheus metrics of a worker (DESIGN.md "Metrics"), on an injected registry.

Prefix ``churnwatch_``; counters end in ``_total``; durations are ``_seconds``
histograms; labels are bounded sets (event type, outcome, level, kind,
category, reason, partition), never a customer id.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from detectors import LEVELS
from detectors.drift import SIGNALS
from detectors.ledger import LINKS, TREATMENTS, LedgerCounts

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
FAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1)


class Metrics:
    """Every metric a worker exports. Pass a fresh registry in tests."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        p = "churnwatch_"
        self.events = Counter(
            p + "events",
            "Input records by event type and outcome (processed, duplicate, rejected, error).",
            ["type", "outcome"],
            registry=r,
        )
        self.records = Counter(
            p + "records",
            "Input records this worker read, by partition and outcome (processed, duplicate, "
            "dead_lettered; redelivered: already in the checkpoint, skipped; refetched: "
            "skipped by the consumer, read from the broker, also counted by outcome).",
            ["partition", "outcome"],
            registry=r,
        )
        self.partition_records = Gauge(
            p + "partition_records",
            "Input records in an owned partition's checkpointed history, by outcome "
            "(processed, duplicate, dead_lettered): survives restarts and rebalances.",
            ["partition", "outcome"],
            registry=r,
        )
        self.processing = Histogram(
            p + "event_processing_seconds",
            "Time to decode, score, store and send one record.",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.alert_latency = Histogram(
            p + "event_to_alert_seconds",
            "From the triggering record's Kafka timestamp to the alert's send.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.alerts = Counter(
            p + "alerts",
            "Alerts sent by kind, level and top reason category.",
            ["kind", "level", "category"],
            registry=r,
        )
        self.dlq = Counter(p + "dlq", "Records dead-lettered by reason.", ["reason"], registry=r)
        self.labels = Counter(
            p + "labels",
            "Delayed labels learned by the model (1 includes silence's soft ones; relabelled: "
            "one of those learned over, as 0 on a return or a whole 1 on a churned outcome).",
            ["label"],
            registry=r,
        )
        self.swept = Counter(p + "swept_customers", "Customers re-evaluated by sweeps.", registry=r)
        self.sweep = Histogram(
            p + "sweep_seconds",
            "Duration of one sweep of a partition.",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.customers = Gauge(
            p + "customers_tracked",
            "Customers with state, by partition.",
            ["partition"],
            registry=r,
        )
        self.at_risk = Gauge(
            p + "customers_at_risk",
            "Customers with an open alert, by level.",
            ["level"],
            registry=r,
        )
        self.value_at_risk = Gauge(
            p + "value_at_risk",
            "Sum of value at risk over customers with an open alert.",
            registry=r,
        )
        self.model = Gauge(
            p + "model_quality",
            "Progressive validation of the shard model (auc, log_loss, brier, weight).",
            ["partition", "metric"],
            registry=r,
        )
        self.model_labels = Gauge(
            p + "model_labels",
            "Labels the shard model learned so far.",
            ["partition"],
            registry=r,
        )
        self.comeback = Gauge(
            p + "silence_comeback_ratio",
            "Of the customers silence counted gone, the share who bought again, by the "
            "returns they had made before (0 .. 5+); the labels silence gives weigh less "
            "where it is high.",
            ["returns"],
            registry=r,
        )
        self.lag = Gauge(
            p + "consumer_lag",
            "Records not yet processed, by topic and partition (from the fetch high watermark).",
            ["topic", "partition"],
            registry=r,
        )
        self.checkpoints = Counter(
            p + "model_checkpoints",
            "Model checkpoints written to the changelogged table.",
            registry=r,
        )
        self.sweep_backlog = Gauge(
            p + "sweep_backlog_seconds",
            "How far the earliest overdue customer is behind the partition clock (0: on time).",
            ["partition"],
            registry=r,
        )
        self.expired = Counter(
            p + "customers_expired",
            "Customers whose state was dropped after expire_after_days of silence.",
            registry=r,
        )
        self.drift = Counter(
            p + "drift_detected",
            "Population drift detections (ADWIN) by signal: score, order_value, label_rate.",
            ["signal"],
            registry=r,
        )
        self.inconsistencies = Counter(
            p + "state_inconsistencies",
            "Local state found to disagree with the changelog, by check: stale_changelog "
            "(old changelog records the table recovery tried to write over newer local "
            "states; dropped), restore_mismatch (a restored partition does not match its "
            "newest checkpoint; the worker wipes its copy and stops).",
            ["check"],
            registry=r,
        )
        for check in ("stale_changelog", "restore_mismatch"):
            self.inconsistencies.labels(check)
        self.rebalances = Counter(
            p + "rebalances", "Partition assignments this worker went through.", registry=r
        )
        self.partitions_assigned = Gauge(
            p + "partitions_assigned", "Partitions (numbers) this worker owns.", registry=r
        )
        # the retention ledger (detectors/ledger.py)
        self.cases_opened = Counter(
            p + "cases_opened",
            "Alert cases opened, by treatment arm (treated, control) and opening level.",
            ["treatment", "level"],
            registry=r,
        )
        self.cases = Counter(
            p + "cases",
            "Alert cases with a decided outcome (recovered, churned, still_at_risk), by "
            "treatment arm, opening level and top reason category at opening.",
            ["treatment", "level", "category", "outcome"],
            registry=r,
        )
        self.case_actions = Counter(
            p + "case_actions",
            "Alert cases with a decided outcome, by each action their alerts recommended "
            "(built-in playbook codes, else other), treatment arm and outcome.",
            ["action", "treatment", "outcome"],
            registry=r,
        )
        self.retention_actions = Counter(
            p + "retention_actions",
            "Action reports read from retention-actions, by action (built-in playbook codes, "
            "else other) and status (sent, delivered, failed).",
            ["action", "status"],
            registry=r,
        )
        self.action_links = Counter(
            p + "retention_action_links",
            "Action reports by what they were linked to: linked (a treated case), control (a "
            "control case, which should get no action), unmatched, unknown_customer.",
            ["link"],
            registry=r,
        )
        for level in LEVELS[1:]:
            self.at_risk.labels(level)
            for arm in TREATMENTS:
                self.cases_opened.labels(arm, level)
        for link in LINKS:
            self.action_links.labels(link)
        for signal in SIGNALS:
            self.drift.labels(signal)
        # process_* resource metrics (CPU, memory, fds), as the default registry has them
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def forget_partition(self, partition: int) -> None:
        """Drop the series of a partition this worker no longer owns (no stale values)."""
        p = str(partition)
        for gauge in (self.customers, self.sweep_backlog, self.model_labels):
            _remove(gauge, p)
        for metric in ("auc", "log_loss", "brier", "weight"):
            _remove(self.model, p, metric)
        for outcome in ("processed", "duplicate", "dead_lettered"):
            _remove(self.partition_records, p, outcome)
        for labels in list(self.lag._metrics):  # (topic, partition)
            if labels[1] == p:
                _remove(self.lag, *labels)

    def export_ledger(self, counts: LedgerCounts, reported: dict[str, int]) -> None:
        """Add what a shard's ledger counted since the last call; ``reported`` remembers
        the totals already exported (keys ``<metric>/<labels>``)."""
        tables: tuple[tuple[Counter, str, dict], ...] = (
            (self.cases_opened, "opened", counts.opened),
            (self.cases, "cases", counts.cases),
            (self.case_actions, "case_actions", counts.by_action),
            (self.retention_actions, "actions", counts.actions),
            (self.action_links, "links", {(k,): v for k, v in counts.links.items()}),
        )
        for metric, name, table in tables:
            for labels, n in table.items():
                key = f"{name}/{'/'.join(labels)}"
                done = reported.get(key, 0)
                if n > done:
                    metric.labels(*labels).inc(n - done)
                    reported[key] = n

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` over HTTP from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)


def _remove(metric: Gauge, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
