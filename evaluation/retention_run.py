"""``churnwatch report``: the retention ledger of a replay or of a simulated campaign.

The engine runs over an events file (``--events``, with any ``action`` reports in it) or
over a closed-loop simulated campaign (:mod:`streams.campaign`); its shards' ledger
counters become :func:`evaluation.retention.summarize`'s report: ``report.json`` and
``report.png`` in the output folder, and tables on the terminal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from detectors import Engine
from evaluation.retention import ledger_counts, summarize
from streams.campaign import CampaignConfig, CampaignResult, close_windows, run_campaign
from streams.ordering import in_time_order
from streams.replay import RejectsWriter, replay
from streams.simulate import write_events


def _report(
    engine: Engine, data: dict[str, Any], known: dict[str, float] | None = None
) -> dict[str, Any]:
    cfg = engine.cfg
    return {
        "report": "churnwatch-retention",
        "version": 1,
        "recovery_window_days": cfg.recovery_window_days,
        "horizon_days": cfg.horizon_days,
        "control_share": dict(cfg.control_share),
        "data": {**data, "partitions": engine.partitions},
        "retention": summarize(ledger_counts(engine), known),
    }


def events_report(
    path: Path, engine: Engine, *, close: bool = False, show_progress: bool = False
) -> dict[str, Any]:
    """Replay ``path`` (every shard's clock then moved to its last event; with ``close``,
    one recovery window further, so every case gets its outcome) and report the ledger."""
    from evaluation.run import time_range

    with in_time_order(path) as (ordered, late):
        _, last = time_range(ordered)
        stats = replay(
            ordered,
            engine,
            lambda _: None,
            rejects=RejectsWriter(None),
            until=last,
            show_progress=show_progress,
        )
    if close:
        close_windows(engine, last)
    data = {
        "source": path.name,
        "events": stats.events,
        "rejected": sum(stats.rejected.values()),
        "late_lines": late,
        "closed_windows": close,
    }
    return _report(engine, data)


def campaign_report(result: CampaignResult, cfg: CampaignConfig) -> dict[str, Any]:
    """The ledger of a simulated campaign, with the effect it put in beside the estimate."""
    data = {"source": "simulated campaign", "events": len(result.events), "closed_windows": True}
    report = _report(result.engine, data, result.known_effect())
    report["campaign"] = {
        "customers": cfg.sim.customers,
        "days": cfg.sim.days,
        "seed": cfg.sim.seed,
        "effect": cfg.effect,
        "acts_on": list(cfg.levels),
        "failure_share": cfg.failure_share,
        "reached": dict(result.reached),
        "would_return_anyway": dict(result.natural),
        "won_back": dict(result.caused),
    }
    return report


def run_campaign_report(
    cfg: CampaignConfig, make_engine: Any, events_out: Path | None = None
) -> dict[str, Any]:
    result = run_campaign(cfg, make_engine)
    if events_out is not None:
        events_out.parent.mkdir(parents=True, exist_ok=True)
        write_events(events_out, result.events)
    return campaign_report(result, cfg)


def write_report(
    report: dict[str, Any],
    out_dir: Path,
    json_path: Path | None = None,
    console: Console | None = None,
) -> None:
    """``report.json`` and ``report.png`` in ``out_dir`` (``json_path``: a copy, ``-``:
    stdout), and the tables on ``console``."""
    from evaluation.retention_view import print_retention, render

    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, allow_nan=False) + "\n"
    (out_dir / "report.json").write_text(text, encoding="utf-8")
    render(report, out_dir / "report.png")
    if json_path is not None:
        if str(json_path) == "-":
            sys.stdout.write(text)
        else:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(text, encoding="utf-8")
    if console is not None:
        print_retention(report, console)
