"""The ``churnwatch`` command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from detectors import ChurnwatchError, Engine
from detectors.alerts import Alert
from detectors.comeback import ComebackRate
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
RiskTargetOpt = Annotated[
    str | None,
    typer.Option(
        "--risk-target",
        help="churn (the relationship ends within the horizon) or lapse (no purchase "
        "within it); see README, Risk target.",
    ),
]
PlaybookOpt = Annotated[
    Path | None,
    typer.Option("--playbook", help="Retention playbook TOML file (see deploy/playbook.toml)."),
]

BrokerOpt = Annotated[
    str | None,
    typer.Option("--broker", help="Kafka bootstrap host:port[,...] (else CHURNWATCH_BROKER)."),
]
ClockOpt = Annotated[
    str | None,
    typer.Option("--clock", help="wall (live, default) or event (backfill of history)."),
]

topics_app = typer.Typer(help="Manage the pipeline's Kafka topics.", no_args_is_help=True)
alerts_app = typer.Typer(help="Read the alert topic.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(alerts_app, name="alerts")


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
    config: Path | None,
    partitions: int | None,
    horizon: float | None,
    playbook: Path | None,
    risk_target: str | None = None,
) -> Settings:
    engine: dict[str, object] = {"horizon_days": horizon} if horizon is not None else {}
    if risk_target is not None:
        engine["risk_target"] = risk_target
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
    rate = ComebackRate.pooled(shard.model.comeback for shard in engine.shards)
    if gone := sum(rate.confirmations):
        back = sum(rate.returns)
        table.add_row("counted gone by silence", f"{gone:,.0f}, {back / gone:.0%} came back")
    quality = engine.shards[0].model.metrics()
    table.add_row(
        "model (shard 0)",
        f"weight {quality['model_weight']:.2f}, progressive AUC {quality['roc_auc']:.3f}, "
        f"log loss {quality['log_loss']:.3f}",
    )
    err.print(table)


def _replay_file(
    file: Path,
    engine: Engine,
    on_alert: Callable[[Alert], object],
    rejects: Path | None,
    strict: bool,
    until: int | None,
    progress: bool,
) -> ReplayStats:
    """Replay ``file`` through ``engine``, bad lines to the ``rejects`` file if given."""
    rej = rejects.open("w", encoding="utf-8") if rejects else None
    try:
        return replay(
            file,
            engine,
            on_alert,
            rejects=RejectsWriter(rej),
            strict=strict,
            until=until,
            show_progress=progress and err.is_terminal,
        )
    finally:
        if rej:
            rej.close()


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
    risk_target: RiskTargetOpt = None,
    playbook: PlaybookOpt = None,
) -> None:
    """Run the engine over a time-sorted JSON-lines file of events; alerts out as JSON lines."""
    settings = _settings(config, partitions, horizon_days, playbook, risk_target)
    engine = _engine(settings)
    out = alerts_out.open("wb") if alerts_out else sys.stdout.buffer
    try:
        stats = _replay_file(
            file,
            engine,
            lambda a: out.write(alert_line(a)),
            rejects,
            strict,
            parse_time(until) if until else None,
            progress,
        )
    finally:
        if alerts_out:
            out.close()
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
    risk_target: RiskTargetOpt = None,
    playbook: PlaybookOpt = None,
) -> None:
    """Every customer's risk as of a time, from the events up to it (CSV, riskiest first)."""
    settings = _settings(config, partitions, horizon_days, playbook, risk_target)
    engine = _engine(settings)
    t = parse_time(as_of)
    stats = _replay_file(file, engine, lambda a: None, rejects, strict, t, progress)
    with out.open("w", encoding="utf-8", newline="") as fh:
        n = write_scores(engine, t, fh)
    _summary(stats, engine, f"scores as of {as_of}")
    err.print(f"wrote {n:,} customers to {out}")


@app.command("evaluate")
def evaluate_cmd(
    events: Annotated[
        Path,
        typer.Option("--events", exists=True, dir_okay=False, help="JSON-lines events, in order."),
    ],
    truth: Annotated[
        Path,
        typer.Option(
            "--truth", exists=True, dir_okay=False, help="CSV customer_id,churn_date[,cause]."
        ),
    ],
    cutoffs: Annotated[
        str | None,
        typer.Option("--cutoffs", help="Comma-separated dates (default: quarter starts)."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for report.json and report.png.")
    ] = Path("evaluation-report"),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the JSON report here (- : stdout).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples (0: no intervals).")
    ] = 200,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    config: ConfigOpt = None,
    partitions: PartitionsOpt = None,
    horizon_days: HorizonOpt = None,
    risk_target: RiskTargetOpt = None,
    playbook: PlaybookOpt = None,
) -> None:
    """Replay against ground truth: AUC at cutoffs vs baselines, calibration, alert quality."""
    from evaluation.run import run_evaluation

    settings = _settings(config, partitions, horizon_days, playbook, risk_target)
    cuts = [parse_time(c.strip()) for c in cutoffs.split(",") if c.strip()] if cutoffs else None
    run_evaluation(
        events,
        truth,
        _engine(settings),
        cutoffs=cuts,
        out_dir=out,
        json_path=json_out,
        draws=bootstrap,
        seed=seed,
        console=err if json_out is not None and str(json_out) == "-" else Console(),
        show_progress=progress and err.is_terminal,
    )
    err.print(f"wrote {out / 'report.json'} and {out / 'report.png'}")


@app.command("worker")
def worker_cmd(
    broker: BrokerOpt = None,
    partitions: PartitionsOpt = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve /metrics on this port.")
    ] = None,
    metrics_host: Annotated[
        str | None, typer.Option("--metrics-host", help="Bind address of /metrics.")
    ] = None,
    clock: ClockOpt = None,
    app_id: Annotated[str | None, typer.Option("--app-id", help="Consumer group / app id.")] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="memory:// or rocksdb:// (production).")
    ] = None,
    create_topics: Annotated[
        bool, typer.Option(help="Create missing topics before starting.")
    ] = True,
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
    config: ConfigOpt = None,
) -> None:
    """A Faust worker: events in, per-customer state in tables, alerts out."""
    from streams.worker import run_worker

    if clock not in (None, "wall", "event"):
        raise typer.BadParameter("--clock must be wall or event")
    settings = load_settings(
        config,
        broker=broker,
        partitions=partitions,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        clock=clock,
        app_id=app_id,
        store=store,
        log_level=log_level,
    )
    run_worker(settings, create=create_topics)


@app.command("forward")
def forward_cmd(
    url: Annotated[
        str | None, typer.Option("--url", help="Receiver URL (else CHURNWATCH_WEBHOOK__URL).")
    ] = None,
    secret_env: Annotated[
        str | None,
        typer.Option(
            "--secret-env",
            help="Environment variable with the signing secret (else CHURNWATCH_WEBHOOK__SECRET).",
        ),
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Consumer group (default <app id>-webhook).")
    ] = None,
    max_retries: Annotated[int | None, typer.Option("--max-retries", min=0)] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0.001, help="Seconds per attempt.")
    ] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1)] = None,
    broker: BrokerOpt = None,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port")] = None,
    metrics_host: Annotated[str | None, typer.Option("--metrics-host")] = None,
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
    config: ConfigOpt = None,
) -> None:
    """POST every alert to a webhook: signed, in order per customer, retried, dead-lettered."""
    from streams.forward import run_forward
    from streams.settings import with_webhook

    settings = load_settings(
        config,
        broker=broker,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_level=log_level,
    )
    settings = with_webhook(
        settings,
        secret_env,
        url=url,
        group=group,
        max_retries=max_retries,
        timeout_s=timeout,
        concurrency=concurrency,
    )
    raise typer.Exit(run_forward(settings))


@topics_app.command("create")
def topics_create_cmd(
    broker: BrokerOpt = None,
    partitions: PartitionsOpt = None,
    app_id: Annotated[str | None, typer.Option("--app-id", help="Names the changelogs.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Create every topic (inputs, alerts, DLQs, ticks, compacted changelogs and webhook
    acks); keeps existing."""
    import asyncio

    from streams.topics import create_topics

    settings = load_settings(config, broker=broker, partitions=partitions, app_id=app_id)
    result = asyncio.run(create_topics(settings))
    for name, what in result.items():
        err.print(f"{what:>8}  {name}")


@app.command("simulate")
def simulate_cmd(
    out: Annotated[Path | None, typer.Option("--out", help="Events file (JSON lines).")] = None,
    to: Annotated[str, typer.Option("--to", help="file (needs --out) or kafka.")] = "file",
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Ground truth CSV (churn date, cause).")
    ] = None,
    truth_detail: Annotated[
        bool,
        typer.Option(
            "--truth-detail", help="Truth CSV also gets segment, signal, lead, pauses, traits."
        ),
    ] = False,
    customers: Annotated[int, typer.Option(min=1)] = 2000,
    days: Annotated[int, typer.Option(min=30)] = 540,
    seed: Annotated[int, typer.Option()] = 7,
    start: Annotated[str, typer.Option(help="First day (ISO date).")] = "2024-01-01",
    broker: BrokerOpt = None,
    partitions: PartitionsOpt = None,
    rate: Annotated[
        float,
        typer.Option("--rate", min=0, help="Kafka: events per second (0: as fast as possible)."),
    ] = 0.0,
    speed: Annotated[
        float,
        typer.Option(
            "--speed", min=0, help="Kafka: real-time pace, simulated seconds per second (0: off)."
        ),
    ] = 0.0,
    config: ConfigOpt = None,
) -> None:
    """Synthetic customers with known churn dates and causes, to a file or to Kafka."""
    from streams.simulate import SimConfig, generate, write_events, write_truth

    if to not in ("file", "kafka"):
        raise typer.BadParameter("--to must be file or kafka")
    if to == "file" and out is None:
        raise typer.BadParameter("--to file needs --out FILE")
    events, rows = generate(SimConfig(customers=customers, days=days, seed=seed, start=start))
    if truth:
        write_truth(truth, rows, detail=truth_detail)
    churners = sum(1 for r in rows if r.churn_date)
    if out is not None:
        n = write_events(out, events)
        err.print(f"wrote {n:,} events for {customers:,} customers ({churners:,} churn) to {out}")
    if to == "kafka":
        from streams.feed import send_events

        settings = load_settings(config, broker=broker, partitions=partitions)
        n = send_events(settings, events, rate=rate, speed=speed, console=err)
        err.print(
            f"sent {n:,} events for {customers:,} customers ({churners:,} churn) "
            f"to {settings.topic('events')} on {settings.broker}"
        )


@alerts_app.command("tail")
def alerts_tail_cmd(
    broker: BrokerOpt = None,
    level: Annotated[
        list[str] | None, typer.Option("--level", help="Only these levels (repeatable).")
    ] = None,
    category: Annotated[
        list[str] | None, typer.Option("--category", help="Only these top categories.")
    ] = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest alert.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON values.")] = False,
    idle_timeout: Annotated[
        float | None, typer.Option("--idle-timeout", help="Exit after this many quiet seconds.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Follow the alert topic, optionally filtered by level and reason category."""
    import asyncio

    from detectors import decode_alert
    from streams.feed import read_topic

    settings = load_settings(config, broker=broker)
    console = Console()

    async def run() -> None:
        topic = settings.topic("alerts")
        async for _, value, _, _ in read_topic(
            settings, topic, from_beginning=from_beginning, idle_timeout=idle_timeout
        ):
            if value is None:
                continue
            alert = decode_alert(value)
            top = alert.reasons[0].category if alert.reasons else "none"
            if level and alert.risk_level not in level:
                continue
            if category and top not in category:
                continue
            if as_json:
                sys.stdout.write(value.decode() + "\n")
                sys.stdout.flush()
            else:
                _print_alert(console, alert)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


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
    broker: Annotated[
        str | None, typer.Option("--broker", help="Use this Kafka instead of the embedded broker.")
    ] = None,
    customers: Annotated[int, typer.Option(min=10)] = 400,
    days: Annotated[int, typer.Option(min=30)] = 540,
    seed: Annotated[int, typer.Option()] = 11,
    rate: Annotated[float, typer.Option("--rate", min=0, help="Events/s (0: max).")] = 2000.0,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds.")
    ] = None,
    partitions: PartitionsOpt = None,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port")] = None,
    workdir: Annotated[Path, typer.Option(help="Where the demo writes its logs.")] = Path("out"),
) -> None:
    """Embedded broker + topics + worker + simulator, with a live view and /metrics.

    Ends by itself once the simulated stream is processed (or after --duration); Ctrl-C stops it.
    """
    import uuid

    from streams.live import run_demo

    tag = uuid.uuid4().hex[:6]
    settings = load_settings(
        None,
        broker=broker,
        partitions=partitions,
        app_id=f"churnwatch-demo-{tag}",
        topic_prefix="" if broker is None else f"demo-{tag}-",
    )
    console = Console()
    view = run_demo(
        settings,
        embedded=broker is None,
        customers=customers,
        days=days,
        seed=seed,
        rate=rate,
        duration=duration,
        metrics_port=metrics_port,
        workdir=str(workdir),
        console=console,
    )
    console.print(
        f"done: {view.sent:,} events sent, {int(view.processed):,} processed, "
        f"{view.alerts:,} alerts, value at risk {view.value_at_risk:,.0f}"
    )


@app.command("report")
def report_cmd(
    events: Annotated[
        Path | None,
        typer.Option(
            "--events", exists=True, dir_okay=False, help="JSON-lines events (with actions)."
        ),
    ] = None,
    simulate_campaign: Annotated[
        bool,
        typer.Option(
            "--simulate-campaign",
            help="Instead of --events: simulate customers and a retention campaign that acts "
            "on treated high and critical alerts, with a known effect.",
        ),
    ] = False,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for report.json and report.png.")
    ] = Path("retention-report"),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the JSON report here (- : stdout).")
    ] = None,
    close_windows: Annotated[
        bool,
        typer.Option(
            "--close-windows",
            help="After the last event, run the clock one recovery window on so every case "
            "gets its outcome (a closed history, such as a simulation's).",
        ),
    ] = False,
    control_share: Annotated[
        float | None,
        typer.Option(
            "--control-share",
            min=0.0,
            max=1.0,
            help="Control share at every level (else the engine settings; a campaign "
            "without one uses 0.5).",
        ),
    ] = None,
    recovery_window_days: Annotated[
        float | None, typer.Option("--recovery-window-days", min=1, help="Recovery window.")
    ] = None,
    customers: Annotated[int, typer.Option(min=10, help="Campaign: customers.")] = 2000,
    days: Annotated[int, typer.Option(min=60, help="Campaign: days of history.")] = 400,
    seed: Annotated[int, typer.Option(help="Campaign: seed.")] = 7,
    effect: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Campaign: share of reached customers who would not have come back and do.",
        ),
    ] = 0.3,
    events_out: Annotated[
        Path | None,
        typer.Option("--events-out", help="Campaign: write the events the engine saw here."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    config: ConfigOpt = None,
    partitions: PartitionsOpt = None,
    horizon_days: HorizonOpt = None,
    risk_target: RiskTargetOpt = None,
    playbook: PlaybookOpt = None,
) -> None:
    """Did the retention actions win customers back? Recovery of treated vs control cases."""
    from evaluation.retention_run import events_report, run_campaign_report, write_report
    from streams.campaign import CampaignConfig
    from streams.simulate import SimConfig

    if (events is None) == (not simulate_campaign):
        raise typer.BadParameter("give either --events FILE or --simulate-campaign")
    engine: dict[str, object] = {}
    if horizon_days is not None:
        engine["horizon_days"] = horizon_days
    if risk_target is not None:
        engine["risk_target"] = risk_target
    if recovery_window_days is not None:
        engine["recovery_window_days"] = recovery_window_days
    if control_share is not None:
        engine["control_share"] = dict.fromkeys(("medium", "high", "critical"), control_share)
    settings = load_settings(config, partitions=partitions, engine=engine, playbook_file=playbook)
    if simulate_campaign and not settings.engine_config().control_share:
        settings = load_settings(
            config,
            partitions=partitions,
            engine={**engine, "control_share": dict.fromkeys(("medium", "high", "critical"), 0.5)},
            playbook_file=playbook,
        )
    if simulate_campaign:
        cfg = CampaignConfig(
            sim=SimConfig(customers=customers, days=days, seed=seed), effect=effect, seed=seed
        )
        report = run_campaign_report(cfg, lambda: _engine(settings), events_out)
    else:
        assert events is not None  # noqa: S101 - checked above
        report = events_report(
            events,
            _engine(settings),
            close=close_windows,
            show_progress=progress and err.is_terminal,
        )
        if late := report["data"]["late_lines"]:
            err.print(
                f"{events.name}: {late:,} lines were earlier than a line before them; "
                "replayed a time-sorted copy"
            )
    console = err if json_out is not None and str(json_out) == "-" else Console()
    if not console.is_terminal:
        console.width = max(console.width, 132)
    write_report(report, out, json_out, console)
    err.print(f"wrote {out / 'report.json'} and {out / 'report.png'}")
    if events_out is not None:
        err.print(f"wrote the campaign's events to {events_out}")


def main() -> None:
    try:
        app()
    except ChurnwatchError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
