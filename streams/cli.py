"""The ``churnwatch`` command line."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from detectors import ChurnwatchError, Engine
from detectors.alerts import Alert
from streams.replay import RejectsWriter, ReplayStats, alert_line, make_engine, replay
from streams.scoring import write_scores
from streams.settings import Settings, load_settings

app = typer.Typer(
    name="churnwatch",
    help="Streaming churn early-warning: explained, prioritised risk alerts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML settings file (else CHURNWATCH_CONFIG).")
]
PartitionsOpt = Annotated[
    int | None,
    typer.Option("--partitions", min=1, help="Shards, as the worker's topic partitions."),
]
HorizonOpt = Annotated[
    float | None, typer.Option("--horizon-days", min=1, help="Churn horizon in days.")
]
PlaybookOpt = Annotated[
    Path | None, typer.Option("--playbook", help="Retention playbook TOML ([[actions]]).")
]


def parse_time(text: str) -> int:
    """An RFC 3339 time, a date, or epoch milliseconds, as epoch milliseconds (UTC)."""
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an RFC 3339 time or a date") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _settings(
    config: Path | None, partitions: int | None, horizon: float | None, playbook: Path | None
) -> Settings:
    engine = {"horizon_days": horizon} if horizon is not None else {}
    return load_settings(config, partitions=partitions, engine=engine, playbook_file=playbook)


def _engine(settings: Settings) -> Engine:
    return make_engine(settings.engine_config(), settings.playbook(), settings.partitions)


def _summary(stats: ReplayStats, engine: Engine, title: str) -> None:
    counts = engine.counts()
    table = Table(title=title, show_header=False, box=None)
    table.add_row("lines read", f"{stats.lines:,}")
    table.add_row("events processed", f"{stats.events:,}")
    rejected = sum(stats.rejected.values())
    detail = ", ".join(f"{k} {v}" for k, v in sorted(stats.rejected.items()))
    table.add_row("lines rejected", f"{rejected:,}" + (f" ({detail})" if detail else ""))
    table.add_row("duplicates dropped", f"{counts['duplicates']:,}")
    table.add_row("customers", f"{counts['customers']:,}")
    table.add_row("sweeps", f"{counts['swept']:,}")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.alerts.items())) or "none"
    table.add_row("alerts", f"{sum(stats.alerts.values()):,} ({kinds})")
    table.add_row("labels learned", f"{counts['labels_0'] + counts['labels_1']:,}")
    quality = engine.shards[0].model.metrics()
    table.add_row(
        "model (shard 0)",
        f"weight {quality['model_weight']:.2f}, progressive AUC {quality['roc_auc']:.3f}, "
        f"log loss {quality['log_loss']:.3f}",
    )
    err.print(table)


@app.command("replay")
def replay_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON-lines events.")],
    alerts_out: Annotated[
        Path | None, typer.Option("--alerts-out", help="Write alerts here (JSON lines).")
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option("--rejects", help="Write bad lines here with line and reason.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Stop at this time and sweep up to it.")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad line.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    config: ConfigOpt = None,
    partitions: PartitionsOpt = None,
    horizon_days: HorizonOpt = None,
    playbook: PlaybookOpt = None,
) -> None:
    """Run the engine over a time-sorted JSON-lines file of events; alerts out as JSON lines."""
    settings = _settings(config, partitions, horizon_days, playbook)
    engine = _engine(settings)
    out = alerts_out.open("wb") if alerts_out else sys.stdout.buffer
    rej = rejects.open("w", encoding="utf-8") if rejects else None
    try:
        stats = replay(
            file,
            engine,
            lambda a: out.write(alert_line(a)),
            rejects=RejectsWriter(rej),
            strict=strict,
            until=parse_time(until) if until else None,
            show_progress=progress and err.is_terminal,
        )
    finally:
        if alerts_out:
            out.close()
        if rej:
            rej.close()
    _summary(stats, engine, f"replay of {file.name}")


@app.command("score")
def score_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON-lines events.")],
    as_of: Annotated[str, typer.Option("--as-of", help="Score as of this time (RFC 3339).")],
    out: Annotated[Path, typer.Option("--out", help="CSV output.")] = Path("scores.csv"),
    rejects: Annotated[Path | None, typer.Option("--rejects")] = None,
    strict: Annotated[bool, typer.Option("--strict")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    config: ConfigOpt = None,
    partitions: PartitionsOpt = None,
    horizon_days: HorizonOpt = None,
    playbook: PlaybookOpt = None,
) -> None:
    """Every customer's risk as of a time, from the events up to it (CSV, riskiest first)."""
    settings = _settings(config, partitions, horizon_days, playbook)
    engine = _engine(settings)
    t = parse_time(as_of)
    rej = rejects.open("w", encoding="utf-8") if rejects else None
    try:
        stats = replay(
            file,
            engine,
            lambda a: None,
            rejects=RejectsWriter(rej),
            strict=strict,
            until=t,
            show_progress=progress and err.is_terminal,
        )
    finally:
        if rej:
            rej.close()
    with out.open("w", encoding="utf-8", newline="") as fh:
        n = write_scores(engine, t, fh)
    _summary(stats, engine, f"scores as of {as_of}")
    err.print(f"wrote {n:,} customers to {out}")


@app.command("simulate")
def simulate_cmd(
    out: Annotated[Path, typer.Option("--out", help="Events file (JSON lines).")],
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Ground truth CSV (churn date, cause).")
    ] = None,
    customers: Annotated[int, typer.Option(min=1)] = 2000,
    days: Annotated[int, typer.Option(min=30)] = 540,
    seed: Annotated[int, typer.Option()] = 7,
    start: Annotated[str, typer.Option(help="First day (ISO date).")] = "2024-01-01",
) -> None:
    """Synthetic customers with known churn dates and causes (a development aid)."""
    from streams.simulate import SimConfig, generate, write_events, write_truth

    events, rows = generate(SimConfig(customers=customers, days=days, seed=seed, start=start))
    n = write_events(out, events)
    if truth:
        write_truth(truth, rows)
    churners = sum(1 for r in rows if r.churn_date)
    err.print(f"wrote {n:,} events for {customers:,} customers ({churners:,} churn) to {out}")


def _print_alert(console: Console, alert: Alert) -> None:
    colour = {"critical": "red", "high": "dark_orange", "medium": "yellow"}.get(
        alert.risk_level, "green"
    )
    top = alert.reasons[0].message if alert.reasons else "customer is back"
    action = alert.actions[0].action if alert.actions else "-"
    console.print(
        f"{alert.as_of[:10]} [bold {colour}]{alert.kind:<11} {alert.risk_level:<8}[/] "
        f"{alert.customer_id:<10} risk {alert.risk_score:.2f}  value at risk "
        f"{alert.value_at_risk:>9,.2f}  {top}  -> {action}"
    )


@app.command("demo")
def demo_cmd(
    customers: Annotated[int, typer.Option(min=10)] = 1500,
    seed: Annotated[int, typer.Option()] = 11,
    workdir: Annotated[Path, typer.Option(help="Where the demo writes its files.")] = Path("out"),
) -> None:
    """Simulate customers and replay them through the engine, printing the alerts."""
    from streams.simulate import SimConfig, generate, write_events, write_truth

    workdir.mkdir(parents=True, exist_ok=True)
    events_path = workdir / "demo-events.jsonl"
    events, rows = generate(SimConfig(customers=customers, seed=seed))
    write_events(events_path, events)
    write_truth(workdir / "demo-truth.csv", rows)
    settings = load_settings()
    engine = _engine(settings)
    console = Console()
    console.rule(f"churnwatch demo: {customers:,} simulated customers, {len(events):,} events")
    shown: list[Alert] = []

    def on_alert(alert: Alert) -> None:
        shown.append(alert)
        if alert.kind in ("opened", "escalated") and alert.risk_level in ("high", "critical"):
            _print_alert(console, alert)

    with (workdir / "demo-alerts.jsonl").open("wb") as fh:
        stats = replay(
            events_path,
            engine,
            lambda a: (fh.write(alert_line(a)), on_alert(a)),
            rejects=RejectsWriter(None),
            show_progress=False,
        )
    _summary(stats, engine, "demo summary")
    err.print(f"all {len(shown):,} alerts in {workdir / 'demo-alerts.jsonl'}")


def main() -> None:
    try:
        app()
    except ChurnwatchError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
