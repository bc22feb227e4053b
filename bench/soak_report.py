"""The soak's JSON (bench/soak.py) -> SOAK.md and soak.png beside it.

    .venv/bin/python -m bench.soak --report-only bench/results/soak.json

The plot (matplotlib, Agg, as bench/plots.py) has one panel per resource over time, the
warm-up shaded, the ±5% band around the value after warm-up, and the Redis restart and the
worker kill marked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PANELS = (
    ("worker_rss_mib", "workers' RSS (MiB)", ()),
    ("worker_fds", "workers' open descriptors", ()),
    ("hub_channels", "hub channels (herald_channels_subscribed)", ()),
    ("redis_pubsub_channels", "Redis pub/sub channels and subscriptions",
     ("redis_pubsub_subscriptions",)),
    ("redis_keys", "Redis keys (DBSIZE)", ()),
    ("clients_ready", "clients ready (load) and fleet connections", ("fleet_connections",)),
)  # fmt: skip
EVENT_STYLE = {"redis_restart": ("tab:red", "Redis restart"), "worker_kill": ("k", "worker kill")}


def plot(result: dict[str, Any], path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.soak import TOLERANCE

    samples = result["samples"]
    warmup_s = result["plan"]["warmup_s"]
    fig, axes = plt.subplots(3, 2, figsize=(12, 10), sharex=True)
    for ax, (key, title, extra) in zip(axes.flat, PANELS, strict=True):
        for name in (key, *extra):
            points = [(s["t_s"], s[name]) for s in samples if s.get(name) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), label=name, linewidth=1.2)
        base = result["verdict"].get(key, {}).get("after_warmup")
        if base:
            ax.axhspan(base * (1 - TOLERANCE), base * (1 + TOLERANCE), color="tab:green",
                       alpha=0.15, label="±5% of after warm-up")  # fmt: skip
        ax.axvspan(0, warmup_s, color="grey", alpha=0.12)
        for event in result["events"]:
            style = EVENT_STYLE.get(event["what"])
            if style:
                ax.axvline(event["t_s"], color=style[0], linestyle="--", linewidth=0.9,
                           label=style[1])  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    for ax in axes[-1]:
        ax.set_xlabel("seconds since the traffic began (grey: warm-up)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.0f} s"


def not_ready_lines(acc: dict[str, Any]) -> list[str]:
    """A table of the clients not ready at the end, when the JSON has their details: their
    state, last close, reconnects, the hint they wait on, and per short channel where they
    stand against its top."""
    clients = acc.get("not_ready_clients")
    if not clients:
        return []
    lines = [
        "",
        "  Clients not ready at the end (seconds before the accounting):",
        "",
        "  | client | state | ever ready | last close (ago) | losses / connects (failed) | "
        "waits for hint | subscribes | short channels: position / top |",
        "  |---|---|---|---|---|---|---|---|",
    ]
    for c in clients:
        h, conn = c["history"], c.get("connection") or {}
        close = h["last_close_code"]
        if close is None:  # a connection of the initial open (a plain Client) has no code
            close = "code ?" if h["last_close_reason"] else "no close frame"
        if h["losses"] == 0:
            close = "never lost"
        state = c["state"]
        if conn and not conn.get("lost"):
            state += f" (made {_seconds(conn.get('made_s_ago'))} ago"
            state += f", upgraded {_seconds(conn.get('upgraded_s_ago'))} ago)"
            if conn.get("transport") is False:
                state += ", no transport"
            elif conn.get("reading") is False:
                state += ", not reading"
        subs = ", ".join(
            f"{ch['channel']}: {ch['subscribe']}"
            for ch in c["channels"]
            if ch["subscribe"] != "answered"
        )
        short = ", ".join(
            f"{ch['channel']} {ch['position'] and tuple(ch['position'])} / "
            f"{ch['top'] and tuple(ch['top'])}"
            for ch in c["channels"]
            if ch["behind"] or ch["gap_seen"]
        )
        lines.append(
            f"  | {c.get('process', '?')}/{c['slot']} | {state} | {c['ever_ready']} | "
            f"{close} {h['last_close_reason']!r} ({_seconds(h['last_lost_at'])}) | "
            f"{h['losses']} / {h['connects']} ({h['connect_failures']}"
            f"{' ' + h['last_connect_error'] if h['last_connect_error'] else ''}) | "
            f"{_seconds(c['waits_for_hint_s'])} | {subs or '-'} | {short or '-'} |"
        )
    progress = acc.get("settle_progress")
    if progress:
        lines += [
            "",
            "  Settle (s, clients not ready, silent losses): "
            + ", ".join(f"({t:.0f}, {n}, {lost})" for t, n, lost in progress),
        ]
    return lines


def markdown(result: dict[str, Any], image: str) -> str:
    from bench.soak import RESOURCES, TOLERANCE

    plan, acc, verdict = result["plan"], result["accounting"], result["verdict"]
    for part in ("churn", "slow_readers", "reconnects"):  # a load command that failed late
        result[part] = {"completed": "n/a", "launched": "n/a", "failed": "n/a", "errors": "",
                        "pauses": "n/a", "paused_at_most": "n/a", "reconnected": "n/a",
                        "rounds": "n/a", **result[part]}  # fmt: skip
    lines = [
        "# Soak: the fleet under the Q&A model with churn, slow readers and two faults",
        "",
        f"`python -m bench.soak` (bench/soak.py): {plan['tabs']:,} long-lived clients over "
        f"{plan['load_processes']} load processes, {plan['workers']} workers, "
        f"{plan['warmup_s']:.0f} s warm-up then {plan['seconds']:.0f} s; "
        f"{result['publish_per_s']} publications/s (the Q&A model's nominal rate x "
        f"{plan['rate_multiplier']}), churn {plan['churn_per_s']:.0f} connections/s, "
        f"{100 * plan['slow_share']:.0f}% of the clients not reading at any time for "
        f"{plan['slow_pause_s'][0]:.0f}-{plan['slow_pause_s'][1]:.0f} s each. JSON: "
        f"[soak.json](soak.json).",
        "",
        "## Resources: after warm-up and at the end",
        "",
        f"Median of the last three samples (every {plan['sample_every_s']:.0f} s) of the "
        f"warm-up and of the soak; pass = within ±{100 * TOLERANCE:.0f}%.",
        "",
        "| resource | after warm-up | at the end | change | within ±5% |",
        "|---|---:|---:|---:|---|",
    ]
    for key, label in RESOURCES.items():
        v = verdict[key]
        change = "n/a" if v["change"] is None else f"{100 * v['change']:+.1f}%"
        lines.append(
            f"| {label} | {_fmt(v['after_warmup'])} | {_fmt(v['at_end'])} | {change} | "
            f"{'yes' if v['within'] else '**no**'} |"
        )
    lines += [
        "",
        f"![resources over time]({image})",
        "",
        "## Every client's accounting",
        "",
        "Per (long-lived client, channel), after the traffic stopped: every publication since "
        "it subscribed received up to the channel's last one (complete), or short on a channel "
        "whose recovery answered `failed` (told), or short without a word (silent loss).",
        "",
        "| (client, channel) | complete | failed explicitly | silent loss | of which gaps | "
        "of which behind the last | of which at clients not ready | duplicates | "
        "clients not ready |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {acc['client_channels']:,} | {acc['complete']:,} | {acc['failed_explicit']:,} | "
        f"{acc['silent_loss']:,} | {acc['silent_gaps']:,} | {acc['behind_top']:,} | "
        f"{acc.get('silent_at_clients_not_ready', 'n/a')} | "
        f"{acc['duplicates']:,} | {acc['clients_not_ready']:,} |",
        "",
        "## What happened",
        "",
        f"* Opened {result['opened']['opened']:,} of {result['opened']['requested']:,} in "
        f"{result['opened']['seconds']:.0f} s; published {result['published']:,} "
        f"({result['publish_failed']:,} not confirmed by Redis) on "
        f"{result['channels_published']:,} channels.",
        f"* Churn: {_fmt(result['churn']['completed'])} cycles completed of "
        f"{_fmt(result['churn']['launched'])} launched ({_fmt(result['churn']['failed'])} failed: "
        f"{result['churn']['errors'] or 'none'}), "
        f"{result['churn'].get('achieved_per_s', 'n/a')} completed a second"
        f"{'; ' + result['churn']['error'] if 'error' in result['churn'] else ''}.",
        f"* Slow readers: {_fmt(result['slow_readers']['pauses'])} pauses, at most "
        f"{_fmt(result['slow_readers']['paused_at_most'])} at once.",
        f"* Reconnects with recovery: {_fmt(result['reconnects']['reconnected'])} "
        f"({result['reconnects']['rounds']} rounds; "
        f"{_fmt(result['reconnects'].get('hinted', 'not counted'))} after waiting for the "
        f"close's `retry_ms` hint); subscribes refused with a code that asks for a retry "
        f"{_fmt(result['reconnects'].get('subscribe_refusals', 'not counted'))}, sent again "
        f"{_fmt(result['reconnects'].get('resubscribed', 'never (before the fix)'))}; recoveries "
        f"{result['recoveries']['recovered']:,} recovered, {result['recoveries']['failed']:,} "
        f"failed; close codes seen by the clients {result['client_closes_by_code']}; error "
        f"replies {result.get('client_errors_by_code', 'n/a')}; failed connects "
        f"{result.get('connect_failures', 'n/a')}, refused upgrades "
        f"{result.get('handshake_failures', 'n/a')}.",
    ]
    if "not_ready_no_connection" in acc:
        lines.append(
            f"* Clients not ready at the end: {acc['not_ready_no_connection']} without a "
            f"connection, {acc['not_ready_handshaking']} waiting for the upgrade, "
            f"{acc['not_ready_retrying_subscribe']} with a refused subscribe waiting for its "
            f"backoff, {acc.get('not_ready_refused', 'n/a')} refused without retry, "
            f"{acc['not_ready_awaiting_reply']} with a subscribe not answered."
        )
    if "failed_then_short" in acc:
        lines.append(
            f"* Of the {acc['failed_explicit']:,} (client, channel) failed explicitly, "
            f"{acc['failed_then_short']:,} are at ready clients: short after their last failed "
            "recovery (which leaves a client at the channel's top), so not explained by it."
        )
    lines += not_ready_lines(acc)
    for event in result["events"]:
        details = {k: v for k, v in event.items() if k not in ("t_s", "what")}
        lines.append(f"* t = {event['t_s']} s: {event['what']} {details or ''}")
    if result.get("notes"):
        lines += ["", "## Reading it", ""] + [f"* {note}" for note in result["notes"]]
    machine = result["machine"]
    lines += [
        "",
        "## The machine",
        "",
        f"{machine['cpus']} cores, shared with other work; the machine was busy "
        f"{100 * machine['machine_busy_share']:.0f}% of its CPU time during the run (load "
        f"average at the end {', '.join(f'{x:.1f}' for x in machine['loadavg_at_end'])}). The "
        "load processes, Redis and the fleet share those cores.",
        "",
    ]
    return "\n".join(lines)


def write_report(json_path: Path) -> Path:
    """SOAK.md and soak.png beside *json_path*; the Markdown's path."""
    result = json.loads(json_path.read_text())
    image = plot(result, json_path.parent / "soak.png")
    out = json_path.parent / "SOAK.md"
    out.write_text(markdown(result, image), encoding="utf-8")
    return out
