"""The evaluation report as rich tables for the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from evaluation.evaluate import PROBABILITIES, SCORES
from evaluation.retention import has_cases
from evaluation.retention_view import print_retention

LEVEL_LABELS = {
    "medium": "medium",
    "high": "high",
    "critical": "critical",
    "high_or_critical": "high or critical",
    "any": "any level",
}


def _f(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _ci(e: dict[str, float | None] | None, digits: int = 3, signed: bool = False) -> str:
    if not e or e.get("value") is None:
        return "-"
    fmt = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    text = fmt.format(e["value"])
    low, high = e.get("low"), e.get("high")
    if low is not None and high is not None:
        short = f"{{:+.{digits - 1}f}}" if signed else f"{{:.{digits - 1}f}}"
        text += f" [{short.format(low)}, {short.format(high)}]"
    return text


SHORT = {
    "churnwatch": "churnwatch",
    "recency": "recency",
    "relative_recency": "recency/gap",
    "bgnbd": "BG/NBD",
}


def ranking_tables(report: dict[str, Any]) -> list[Table]:
    """One table per cutoff: each score's ROC AUC, PR AUC, Brier, ECE and churnwatch's margin."""
    h = report["horizon_days"]
    tables = []
    for cut in report["ranking"]:
        note = "" if cut.get("labels_complete", True) else " (horizon runs past the data)"
        table = Table(
            title=f"Cutoff {cut['cutoff']}: {cut['customers']:,} customers, "
            f"{cut['churners']:,} ({_pct(cut['churn_rate'])}) churn within {h:g} days{note}",
            title_justify="left",
            caption="95% bootstrap intervals in brackets",
            caption_justify="left",
        )
        for name in ("score", "ROC AUC", "PR AUC", "Brier", "ECE", "churnwatch ROC AUC margin"):
            table.add_column(name, justify="left" if name == "score" else "right")
        for name in SCORES:
            s = cut["scores"][name]
            table.add_row(
                SHORT[name],
                _ci(s["roc_auc"]),
                _ci(s["pr_auc"]),
                _ci(s.get("brier")) if name in PROBABILITIES else "-",
                _f(s.get("ece")) if name in PROBABILITIES else "-",
                _ci(s["margin"]["roc_auc"], signed=True) if "margin" in s else "",
            )
        tables.append(table)
    return tables


def calibration_table(report: dict[str, Any]) -> Table:
    pooled = report["calibration"]["pooled"]
    table = Table(
        title=f"Calibration of risk_score, all cutoffs pooled: ECE {_f(pooled['ece'])}, "
        f"Brier {_f(pooled['brier'])}",
        title_justify="left",
    )
    for name in ("risk bin", "mean predicted", "observed churn", "customers"):
        table.add_column(name, justify="right")
    for b in pooled["reliability"]:
        table.add_row(
            f"{b['lower']:.1f}-{b['upper']:.1f}",
            _f(b["mean_predicted"]),
            _f(b["observed_rate"]),
            f"{b['count']:,}",
        )
    return table


def alerts_table(report: dict[str, Any]) -> Table:
    alerts = report["alerts"]
    h = report["horizon_days"]
    table = Table(
        title=f"Alerts from {alerts['window']['start']} to {alerts['window']['end']}: "
        f"{alerts['churners']:,} churners who had bought (horizon {h:g} days)",
        title_justify="left",
    )
    cols = (
        "level raised",
        "alerts",
        "precision",
        "recall",
        "by chance",
        "caught ±H",
        "lead days [q1-q3]",
        "per 1k/wk",
        "stayers 1k/wk",
        "resolved",
    )
    for name in cols:
        table.add_column(name, justify="left" if name == "level raised" else "right")
    table.caption = (
        "precision: alerts whose customer churns within the horizon; recall: churners alerted "
        "in the horizon before churning; by chance: the recall if churners were alerted like "
        "stayers; caught ±H: also counting alerts up to H after; "
        "per 1k/wk: alerts per 1,000 active customers per week (stayers: on customers who "
        "never churn); resolved: later resolved"
    )
    table.caption_justify = "left"
    for key, label in LEVEL_LABELS.items():
        row = alerts["levels"][key]
        lead = row["lead_time_days"]
        lead_text = (
            f"{lead['median']:.0f} [{lead['q1']:.0f}-{lead['q3']:.0f}]"
            if lead["median"] is not None
            else "-"
        )
        table.add_row(
            label,
            f"{row['alerts']:,}",
            _pct(row["precision"]),
            _pct(row["recall"]),
            _pct(row["recall_by_chance"]),
            _pct(row["caught"]),
            lead_text,
            _f(row["per_1000_per_week"], 1),
            _f(row["stayers_per_1000_per_week"], 1),
            _pct(row["resolved_share"]),
        )
    return table


def cause_table(report: dict[str, Any]) -> Table:
    table = Table(title="Churners by cause", title_justify="left")
    for name in (
        "cause",
        "churners",
        "recall (any level)",
        "recall (high+)",
        "lead days (high+)",
    ):
        table.add_column(name, justify="left" if name == "cause" else "right")
    for cause, entry in report["alerts"]["by_cause"].items():
        lead = entry["high_or_critical"]["lead_time_days"]["median"]
        table.add_row(
            cause,
            f"{entry['churners']:,}",
            _pct(entry["any"]["recall"]),
            _pct(entry["high_or_critical"]["recall"]),
            "-" if lead is None else f"{lead:.0f}",
        )
    return table


def learning_line(report: dict[str, Any]) -> str:
    """The labels the model learned from, and how often silence was wrong."""
    learning = report["learning"]
    labels = learning["labels"]
    text = (
        f"model ({learning['risk_target']} target) learned {labels['0']:,} labels 0 and "
        f"{labels['1']:,} 1, relabelled {labels['relabelled']:,}"
    )
    rows = [r for r in learning["counted_gone_by_silence"] if r["customers"]]
    if rows:
        shares = ", ".join(
            f"{r['returns_before']}: {r['came_back_share']:.0%} of {r['customers']:,}" for r in rows
        )
        text += f"; counted gone by silence and came back, by returns before: {shares}"
    return text


def print_report(report: dict[str, Any], console: Console) -> None:
    data = report["data"]
    console.print(
        f"[bold]churnwatch evaluation[/]: {data['events']:,} events, {data['customers']:,} "
        f"customers ({data['customers_not_in_truth']:,} not in the truth, left out), "
        f"{data['first_event']} to {data['last_event']}"
    )
    for table in ranking_tables(report):
        console.print(table)
    console.print(calibration_table(report))
    console.print(alerts_table(report))
    console.print(cause_table(report))
    if "learning" in report:
        console.print(learning_line(report))
    retention = report.get("retention")
    if retention is not None and has_cases(retention):
        print_retention(report, console)
