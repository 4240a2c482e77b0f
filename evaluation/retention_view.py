"""The retention ledger report for people: rich tables and a one-figure PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from evaluation.retention import LEVEL_ROWS

ARM_COLOURS = {"treated": "#1f4e9c", "control": "#9a9a9a"}


def _pct(e: dict[str, float | None] | None, signed: bool = False) -> str:
    """A rate in percent with its interval: ``59.1 [55.1, 63.0]``."""
    if not e or e.get("value") is None:
        return "-"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    text = fmt.format(100 * e["value"])
    low, high = e.get("low"), e.get("high")
    if low is not None and high is not None:
        text += f" [{fmt.format(100 * low)}, {fmt.format(100 * high)}]"
    return text


def _count(arm: dict[str, Any]) -> str:
    return f"{arm['recovered']:,}/{arm['cases']:,}"


def rows_table(title: str, label: str, rows: list[dict[str, Any]], known: bool = False) -> Table:
    """One row per group: recovered/cases and rate per arm, uplift (and known effect)."""
    table = Table(
        title=title,
        title_justify="left",
        caption="treated, control: recovered/cases; rates in %, uplift (treated - control) "
        "in points, 95% intervals in brackets",
        caption_justify="left",
    )
    cols = [label, "treated", "rate", "control", "rate ", "uplift"]
    if known:
        cols.append("known")
    for name in cols:
        if name == label:
            table.add_column(name, justify="left", min_width=8, overflow="fold")
        else:
            table.add_column(name, justify="right", no_wrap=name in ("treated", "control"))
    for row in rows:
        cells = [
            row["group"],
            _count(row["treated"]),
            _pct(row["treated"]["rate"]),
            _count(row["control"]),
            _pct(row["control"]["rate"]),
            _pct(row["uplift"], signed=True),
        ]
        if known:
            value = row.get("known_effect")
            cells.append("-" if value is None else f"{100 * value:+.1f}")
        table.add_row(*cells)
    return table


def print_retention(report: dict[str, Any], console: Console) -> None:
    """The ledger tables: by level (with the known effect of a simulation), by category,
    by recommended action, and what happened to the action reports."""
    s = report["retention"]
    window = report["recovery_window_days"]
    known = any("known_effect" in r for r in s["by_level"])
    console.print(
        rows_table(
            f"Recovered within {window:g} days of the alert, by the level the case opened at"
            + (" (known: the effect the simulation put in)" if known else ""),
            "level",
            s["by_level"],
            known=known,
        )
    )
    if s["by_category"]:
        console.print(rows_table("By top reason category", "category", s["by_category"]))
    if s["by_action"]:
        console.print(
            rows_table(
                "By recommended action (cases whose alerts recommended it)",
                "action",
                s["by_action"],
            )
        )
    opened = ", ".join(
        f"{level} {v['treated'] + v['control']:,} ({v['control']:,} control, "
        f"{v['open']['treated'] + v['open']['control']:,} still in their window)"
        for level, v in s["opened"].items()
    )
    console.print(f"cases opened: {opened}")
    reports = s["action_reports"]
    if reports:
        parts = ", ".join(
            f"{code} {v['sent']}/{v['delivered']}/{v['failed']}" for code, v in reports.items()
        )
        console.print(f"action reports (sent/delivered/failed): {parts}")
    links = ", ".join(f"{k} {v:,}" for k, v in s["links"].items())
    console.print(f"action reports linked: {links}")
    if s["links"].get("control"):
        console.print(
            "[yellow]control cases were acted on: the comparison underestimates the uplift[/]"
        )


def render(report: dict[str, Any], path: Path) -> None:
    """Recovery rate treated vs control per level with interval bars, and the uplift."""
    s = report["retention"]
    rows = {r["group"]: r for r in s["by_level"]}
    groups = [g for g in LEVEL_ROWS if g in rows]
    fig = Figure(figsize=(12, 4.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    x = np.arange(len(groups))
    for i, arm in enumerate(("treated", "control")):
        values, low, high = [], [], []
        for g in groups:
            rate = rows[g][arm]["rate"]
            v = rate["value"]
            values.append(np.nan if v is None else 100 * v)
            low.append(0.0 if v is None or rate["low"] is None else 100 * (v - rate["low"]))
            high.append(0.0 if v is None or rate["high"] is None else 100 * (rate["high"] - v))
        left.bar(
            x + (i - 0.5) * 0.38,
            values,
            width=0.36,
            yerr=[low, high],
            capsize=4,
            color=ARM_COLOURS[arm],
            label=arm,
        )
    left.set_xticks(
        x, [f"{g}\n{rows[g]['treated']['cases']}/{rows[g]['control']['cases']}" for g in groups]
    )
    left.set_ylabel("recovered (%)")
    left.set_ylim(0, 100)
    left.set_title(
        f"Recovered within {report['recovery_window_days']:g} days, by opening level\n"
        "(cases treated/control under the level; bars: 95% Wilson)",
        fontsize=11,
    )
    left.legend(frameon=False)
    left.grid(axis="y", alpha=0.25)

    ups, lo, hi = [], [], []
    for g in groups:
        u = rows[g]["uplift"]
        v = u["value"]
        ups.append(np.nan if v is None else 100 * v)
        lo.append(0.0 if v is None or u["low"] is None else 100 * (v - u["low"]))
        hi.append(0.0 if v is None or u["high"] is None else 100 * (u["high"] - v))
    right.errorbar(x, ups, yerr=[lo, hi], fmt="o", capsize=5, color="#1f4e9c", label="uplift")
    known = [rows[g].get("known_effect") for g in groups]
    if any(k is not None for k in known):
        right.scatter(
            x,
            [np.nan if k is None else 100 * k for k in known],
            marker="x",
            s=70,
            color="#d64545",
            zorder=3,
            label="known effect (simulation)",
        )
    right.axhline(0, color="#888888", lw=1)
    right.set_xticks(x, groups)
    right.set_xlim(-0.5, len(groups) - 0.5)
    right.set_ylabel("treated - control (percentage points)")
    right.set_title("Uplift of the retention actions (95% Newcombe interval)", fontsize=11)
    right.legend(frameon=False)
    right.grid(axis="y", alpha=0.25)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
