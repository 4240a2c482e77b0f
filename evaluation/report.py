"""The one-page picture of an evaluation (PNG), drawn from the report dict alone."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from evaluation.evaluate import SCORE_LABELS, SCORES

COLOURS = {
    "churnwatch": "#1f4e9c",
    "recency": "#9a9a9a",
    "relative_recency": "#c98a2b",
    "bgnbd": "#5a9e6f",
}
LEVEL_COLOURS = {"medium": "#f2c94c", "high": "#f2994a", "critical": "#d64545"}


def gains_cutoff(report: dict[str, Any]) -> dict[str, Any] | None:
    """The cutoff the gains chart shows: the latest with complete labels and churners."""
    usable = [r for r in report["ranking"] if r["churners"] and r["customers"]]
    complete = [r for r in usable if r.get("labels_complete", True)]
    pool = complete or usable
    return pool[-1] if pool else None


def _gains(ax: Any, report: dict[str, Any]) -> None:
    cut = gains_cutoff(report)
    ax.plot([0, 100], [0, 100], color="#cccccc", lw=1, ls="--", label="random order")
    if cut is None:
        ax.set_title("Gains: no cutoff with churners")
        return
    for name in SCORES:
        s = cut["scores"][name]
        if not s["gains"]:
            continue
        xy = np.asarray(s["gains"]) * 100
        auc = s["roc_auc"]["value"]
        ax.plot(
            xy[:, 0],
            xy[:, 1],
            color=COLOURS[name],
            lw=2.6 if name == "churnwatch" else 1.5,
            label=f"{SCORE_LABELS[name]} (ROC AUC {auc:.2f})" if auc is not None else name,
        )
    main = cut["scores"]["churnwatch"]["top_decile_capture"]
    best = max(
        (cut["scores"][n]["top_decile_capture"] or 0.0 for n in SCORES if n != "churnwatch"),
        default=0.0,
    )
    if main is not None:
        ax.axvline(10, color="#888888", lw=0.8, ls=":")
        ax.annotate(
            f"calling the riskiest 10% reaches {100 * main:.0f}% of churners\n"
            f"(best baseline {100 * best:.0f}%, random order 10%)",
            xy=(10, 100 * main),
            xytext=(4, 88),
            fontsize=9,
            arrowprops={"arrowstyle": "->", "color": "#555555"},
            bbox={"boxstyle": "round", "fc": "white", "ec": "#bbbbbb"},
        )
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 102)
    ax.set_xlabel("customers contacted, riskiest first (%)")
    ax.set_ylabel("churners reached (%)")
    ax.set_title(
        f"Who to call: churners reached at cutoff {cut['cutoff']}\n"
        f"{cut['customers']:,} customers, {cut['churners']:,} churn within "
        f"{report['horizon_days']:g} days",
        fontsize=11,
    )
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.grid(alpha=0.25)


def _reliability(ax: Any, report: dict[str, Any]) -> None:
    ax.plot([0, 1], [0, 1], color="#cccccc", lw=1, ls="--", label="perfect calibration")
    for r in report["ranking"]:
        bins = r["scores"]["churnwatch"].get("reliability") or []
        if bins:
            ax.plot(
                [b["mean_predicted"] for b in bins],
                [b["observed_rate"] for b in bins],
                color=COLOURS["churnwatch"],
                alpha=0.3,
                lw=1,
            )
    pooled = report["calibration"]["pooled"]
    bins = pooled["reliability"]
    if bins:
        counts = np.array([b["count"] for b in bins], dtype=float)
        ax.plot(
            [b["mean_predicted"] for b in bins],
            [b["observed_rate"] for b in bins],
            color=COLOURS["churnwatch"],
            lw=2,
            label="churnwatch, all cutoffs (thin: each cutoff)",
        )
        ax.scatter(
            [b["mean_predicted"] for b in bins],
            [b["observed_rate"] for b in bins],
            s=20 + 300 * counts / counts.max(),
            color=COLOURS["churnwatch"],
            alpha=0.6,
            zorder=3,
        )
    ece = pooled["ece"]
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted risk (risk_score)")
    ax.set_ylabel(f"share who churned within {report['horizon_days']:g} days")
    ax.set_title(
        "Does a risk of 0.7 mean 70%? Reliability (dot size: customers)\n"
        f"expected calibration error {ece:.3f}"
        if ece is not None
        else "Reliability",
        fontsize=11,
    )
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.grid(alpha=0.25)


def _lead_times(ax: Any, report: dict[str, Any]) -> None:
    alerts = report["alerts"]
    row = alerts["levels"]["high_or_critical"]
    leads = row["lead_times"]
    h = report["horizon_days"]
    edges = np.arange(0, h + 7, 7)
    if leads:
        ax.hist(leads, bins=edges, color=LEVEL_COLOURS["high"], edgecolor="white")
        median = row["lead_time_days"]["median"]
        ax.axvline(median, color="#333333", lw=1.2, ls="--")
        ax.text(median, ax.get_ylim()[1] * 0.95, f" median {median:.0f} days", fontsize=9)
    recall, chance = row["recall"], row["recall_by_chance"]
    ax.set_xlabel("days from the first high or critical alert to the churn date")
    ax.set_ylabel("churners")
    ax.set_xlim(0, h)
    ax.set_title(
        f"Warning time: {len(leads):,} of {alerts['churners']:,} churners warned at high+ "
        f"before leaving ({100 * (recall or 0):.0f}%; {100 * (chance or 0):.0f}% if alerted "
        f"like stayers)\nprecision of high+ alerts {100 * (row['precision'] or 0):.0f}%",
        fontsize=11,
    )
    ax.grid(alpha=0.25, axis="y")


def _weekly(ax: Any, report: dict[str, Any]) -> None:
    weeks = report["alerts"]["weekly"]
    if not weeks:
        ax.set_title("No alerts")
        return
    x = [date.fromisoformat(w["week"]) for w in weeks]
    bottom = np.zeros(len(weeks))
    for level in ("medium", "high", "critical"):
        values = np.array([w[level] for w in weeks], dtype=float)
        ax.bar(x, values, width=6, bottom=bottom, color=LEVEL_COLOURS[level], label=level)
        bottom += values
    ax.plot(x, [w["resolved"] for w in weeks], color="#3a7d44", lw=1.2, label="resolved")
    if report["cutoffs"]:
        ax.axvspan(
            x[0],
            date.fromisoformat(report["cutoffs"][0]),
            color="#eeeeee",
            zorder=0,
            label="warm-up (not judged)",
        )
    for i, cut in enumerate(report["cutoffs"]):
        ax.axvline(
            date.fromisoformat(cut),
            color="#555555",
            lw=0.8,
            ls=":",
            label="cutoffs" if i == 0 else None,
        )
    loc = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(loc))  # type: ignore[no-untyped-call]
    stayers = report["alerts"]["levels"]["any"]["stayers_per_1000_per_week"]
    ax.set_ylabel("alerts raised per week")
    ax.set_title(
        "Alert volume by level (opened or escalated)\n"
        f"on customers who stay: {stayers if stayers is not None else 0:.1f} "
        "per 1,000 per week",
        fontsize=11,
    )
    ax.legend(loc="upper right", fontsize=8, frameon=True, ncol=2)
    ax.grid(alpha=0.25, axis="y")


def render(report: dict[str, Any], path: Path) -> None:
    """Write the four-panel report to ``path`` (PNG)."""
    fig = Figure(figsize=(15, 10.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    _gains(axes[0][0], report)
    _reliability(axes[0][1], report)
    _lead_times(axes[1][0], report)
    _weekly(axes[1][1], report)
    data = report["data"]
    fig.suptitle(
        f"churnwatch evaluation: {data['customers']:,} customers, {data['first_event']} to "
        f"{data['last_event']}, horizon {report['horizon_days']:g} days, cutoffs "
        + ", ".join(report["cutoffs"]),
        fontsize=13,
        fontweight="bold",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
