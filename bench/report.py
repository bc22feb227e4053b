"""Turn a results JSON (bench/run.py) into REPORT.md with PNG plots beside it.

    .venv/bin/python -m bench.report bench/results/latest.json [--out bench/results]

Tables give absolute figures and ratios; the bars of issue 3 section 4 are listed with the
measured value and met / not met, as computed by bench/run.py from the same JSON. Plots
(matplotlib, Agg backend): Q&A mix latency CDF; broadcast deliveries/s and deliveries per
server CPU-second against connections; memory per connection against connections.

A hand-written analysis (what bounds a bar that is not met, measured with py-spy) can sit in
``<out>/ANALYSIS.md``; it is included at the end, under the name of the run it refers to.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TARGET_ORDER = ("floor", "herald", "socketio")
COLORS = {"floor": "#7f7f7f", "herald": "#d62728", "socketio": "#1f77b4"}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        out.append("| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |")
    return out


def _runs(results: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    runs = results["scenarios"].get(scenario, [])
    return sorted(runs, key=lambda r: (TARGET_ORDER.index(r["target"]), r["workers"]))


# --- plots ----------------------------------------------------------------------------------


def _plots(results: dict[str, Any], out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[str, str] = {}

    qa = [s for r in results["scenarios"].get("qa_mix", []) for s in r["steps"]]
    if any(s.get("latency_cdf") for s in qa):
        fig, (ax, tail) = plt.subplots(1, 2, figsize=(11, 4.2))
        for step in qa:
            cdf = step.get("latency_cdf") or []
            if not cdf:
                continue
            xs = [max(p[0], 0.01) for p in cdf]
            label = f"x{step['multiplier']}: {step['publications_per_s']:.0f} pub/s"
            ax.plot(xs, [p[1] for p in cdf], label=label)
            tail.plot(xs, [max(1.0 - p[1], 1e-4) for p in cdf], label=label)
        for a in (ax, tail):
            a.axvline(50, color="k", linestyle="--", linewidth=0.8, label="50 ms bar")
            a.set_xscale("log")
            a.set_xlabel("publish-to-receive latency (ms, log)")
            a.grid(True, which="both", alpha=0.3)
            a.legend(fontsize=8)
        ax.set_ylabel("fraction of deliveries (probe connections)")
        ax.set_title("Q&A mix on Herald: latency CDF")
        tail.set_yscale("log")
        tail.axhline(0.01, color="grey", linestyle=":", linewidth=0.8)
        tail.set_ylabel("fraction slower (1 - CDF, log; p99 at 0.01)")
        tail.set_title("tail")
        made["latency_cdf"] = _save(fig, out / "qa-latency-cdf.png")

    broadcast = _runs(results, "broadcast")
    if broadcast:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
        first_window = (results["settings"].get("broadcast_windows") or [None])[0]
        for r in broadcast:
            pts = sorted(
                (p for p in r["points"] if first_window is None or p.get("window") == first_window),
                key=lambda p: p["connections"],
            )
            label = f"{r['target']} ({r['workers']} worker{'s' if r['workers'] > 1 else ''})"
            style = "-o" if r["workers"] == 1 else "s"
            xs = [p["connections"] for p in pts]
            a1.plot(
                xs,
                [p["deliveries_per_s"] for p in pts],
                style,
                label=label,
                color=COLORS.get(r["target"]),
            )
            a2.plot(
                xs,
                [p["deliveries_per_server_cpu_s"] for p in pts],
                style,
                label=label,
                color=COLORS.get(r["target"]),
            )
        a1.set_title(f"broadcast (window {first_window}): deliveries per second")
        a2.set_title("broadcast: deliveries per server CPU-second")
        for a in (a1, a2):
            a.set_xlabel("connections")
            a.set_xscale("log")
            a.grid(True, which="both", alpha=0.3)
            a.legend(fontsize=8)
            a.set_ylim(bottom=0)
        made["broadcast"] = _save(fig, out / "broadcast.png")

    idle = _runs(results, "idle")
    if idle:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for r in idle:
            pts = sorted(r["points"], key=lambda p: p["connections"])
            label = f"{r['target']} ({r['workers']} worker{'s' if r['workers'] > 1 else ''})"
            ax.plot(
                [p["connections"] for p in pts],
                [p["rss_per_connection_kib"] for p in pts],
                "-o" if r["workers"] == 1 else "s",
                label=label,
                color=COLORS.get(r["target"]),
            )
        ax.axhline(8, color="k", linestyle="--", linewidth=0.8, label="8 KiB bar")
        ax.set_xscale("log")
        ax.set_xlabel("connections")
        ax.set_ylabel("server RSS delta per connection (KiB)")
        ax.set_title("idle: memory per connection")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_ylim(bottom=0)
        made["memory"] = _save(fig, out / "memory.png")
    return made


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


# --- sections -------------------------------------------------------------------------------


def _header(results: dict[str, Any], source: Path) -> list[str]:
    m = results["machine"]
    s = results["settings"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    return [
        "# Herald benchmark report",
        "",
        f"Generated by `python -m bench.report {source.name}` from a `{results['scale']}` run "
        f"started {results['started_at']} ({results['seconds']:.0f} s). Regenerate everything "
        "with `.venv/bin/python -m bench.run --scale quick` (or `--scale full`).",
        "",
        *(
            f"**Merged results.** {note.removeprefix('merged: ')}"
            for note in results.get("notes", [])
            if note.startswith("merged: ")
        ),
        "",
        f"**Machine.** {m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, Linux "
        f"{m['kernel']}, Python {m['python']}, {m['redis']}; open files {m['open_files_limit']}"
        f". Herald at {m['git'] or 'unknown commit'} (server code sha256 "
        f"{m.get('server_code_sha256', '?')}). Packages: {pk}.",
        "",
        f"**Load.** {s['load_processes']} load processes (raw asyncio clients on uvloop, "
        f"sources {', '.join(s['load_sources'])}, at most "
        f"{s['max_connections_per_load_process']:,} sockets each). The servers, Redis and the "
        "load generator share the same cores: every CPU figure below is what the process "
        "measured for itself (utime + stime from /proc), and rates are bounded by the "
        "sharing. Herald settings: "
        + ", ".join(f"`{k}={v}`" for k, v in s.get("herald_env", {}).items())
        + ".",
        "",
    ]


def _bars(results: dict[str, Any]) -> list[str]:
    rows = [
        [b["bar"], b["measured"], "**met**" if b["met"] else "**not met**"]
        for b in results.get("bars", [])
    ]
    return ["## The bars (issue 3, section 4)", "", *_table(["bar", "measured", ""], rows), ""]


def _idle(results: dict[str, Any]) -> list[str]:
    runs = _runs(results, "idle")
    if not runs:
        return []
    rows = []
    for r in runs:
        for p in r["points"]:
            rows.append(
                [
                    r["target"],
                    r["workers"],
                    p["connections"],
                    p["rss_per_connection_kib"],
                    p["kernel_slab_per_connection_kib"],
                    p["kernel_tcp_buffers_per_connection_kib"],
                    p["opened_per_s"],
                ]
            )
    hold = [
        [
            r["target"],
            r["workers"],
            r["hold"]["connections"],
            r["hold"]["seconds"],
            r["hold"]["server_cpu_percent"],
            r["hold"]["server_cpu_us_per_connection_per_s"],
            r["hold"]["still_open"],
        ]
        for r in runs
    ]
    return [
        "## a. Idle connections",
        "",
        "Each connection subscribed to one of 100 channels. RSS is summed over the server's "
        "process tree; the delta from before the first connection is divided by the "
        "connections. Kernel memory is the whole machine's (both ends of each loopback "
        "connection): slab (socket, inode and file objects) and TCP buffers.",
        "",
        *_table(
            [
                "target",
                "workers",
                "connections",
                "RSS KiB/conn",
                "kernel slab KiB/conn",
                "kernel TCP buffers KiB/conn",
                "connections opened/s",
            ],
            rows,
        ),
        "",
        "Holding them (heartbeats only; Herald and Socket.IO send one every 25 s, the floor none):",
        "",
        *_table(
            [
                "target",
                "workers",
                "connections",
                "window s",
                "server CPU %",
                "server CPU us per connection-second",
                "still open",
            ],
            hold,
        ),
        "",
    ]


def _broadcast(results: dict[str, Any]) -> list[str]:
    runs = _runs(results, "broadcast")
    if not runs:
        return []
    settings = results["settings"]
    windows = settings.get("broadcast_windows") or [settings.get("broadcast_window")]
    rows = []
    for r in runs:
        for p in sorted(r["points"], key=lambda p: (p["connections"], -p.get("window", 0))):
            v = p["verify"]
            burst = p.get("burst")
            rows.append(
                [
                    r["target"],
                    r["workers"],
                    p["connections"],
                    p.get("window"),
                    p["publications"],
                    p["deliveries_per_s"],
                    p["deliveries_per_server_cpu_s"],
                    p["server_writes_per_delivery"],
                    burst["frames_per_write"] if burst else "",
                    p["loadgen_cpu_us_per_delivery"],
                    p["latency"]["p50_ms"],
                    p["latency"]["p99_ms"],
                    f"{v['clients_exact']:,}/{p['connections']:,}",
                    v["missing"],
                ]
            )
    return [
        "## b. Broadcast",
        "",
        "One channel, every connection subscribed; publications as fast as the server "
        f"delivers them: at most `window` publications ahead of the average client (windows "
        f"{windows}; the first is the scenario's load and the one the bars use; window 1 is "
        "lockstep, where no two publications are ever ready together, so nothing can be "
        "coalesced). Every client's count is checked. Server writes are write()/writev() "
        "calls (/proc/<pid>/io syscw). The burst column: "
        f"{settings['burst_size']} publications released at once (`CLIENT PAUSE ... WRITE` "
        "in Redis), frames that reached the clients per server write call.",
        "",
        *_table(
            [
                "target",
                "workers",
                "connections",
                "window",
                "publications",
                "deliveries/s",
                "deliveries per server CPU-s",
                "server writes/delivery",
                "burst frames/write",
                "load-gen CPU us/delivery",
                "p50 ms",
                "p99 ms",
                "clients with every publication",
                "missing",
            ],
            rows,
        ),
        "",
    ]


def _ratios(results: dict[str, Any]) -> list[str]:
    ratios = results.get("ratios") or {}
    if not ratios:
        return []
    rows = []
    for key, entries in ratios.items():
        for e in entries:
            peer = key.rsplit("/", 1)[1]
            rows.append([key, e["connections"], e["herald"], e[peer], f"{e['ratio']:.2f}"])
    return [
        "## Ratios (single worker each, same load)",
        "",
        *_table(["measure", "connections", "herald", "peer", "herald / peer"], rows),
        "",
    ]


def _qa(results: dict[str, Any]) -> list[str]:
    runs = results["scenarios"].get("qa_mix", [])
    if not runs:
        return []
    out = ["## c. Q&A mix (Herald)", ""]
    for r in runs:
        nominal = r["nominal_rates_per_100k_tabs"]
        out += [
            f"{r['opened']:,} of {r['tabs']:,} connections opened on {r['workers']} workers "
            f"({r['subscriptions']:,} subscriptions over {r['questions']:,} questions with Zipf "
            "popularity, `questions:new` on 10 % of tabs, `user:<id>` with a token on 50 %). "
            f"Nominal rate for 100,000 tabs: {nominal['question_per_s']} question events/s, "
            f"{nominal['user_per_s']} user events/s, {nominal['questions_new_per_s']} "
            "questions:new/s, scaled with the number of tabs"
            + (
                f" and multiplied by {r['rate_boost']} at this scale"
                if r["rate_boost"] != 1
                else ""
            )
            + ". Publications go through `publisher.Publisher` (Lua script, stream, pub/sub). "
            "Latency: publish call to receipt on probe connections (one in "
            f"{results['settings']['qa_probe_every']}).",
            "",
        ]
        rows = [
            [
                f"x{s['multiplier']}",
                s["publications_per_s"],
                s["deliveries_per_s"],
                s["latency"]["p50_ms"],
                s["latency"]["p99_ms"],
                s["latency"]["p999_ms"],
                s["latency"]["samples"],
                s["drops"],
                s["slow_disconnects"],
                s["server_cpu_percent"],
                s["loadgen_cpu_s"],
                "yes" if s["meets_bar"] else "no",
            ]
            for s in r["steps"]
        ]
        out += _table(
            [
                "rate",
                "publications/s",
                "deliveries/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "samples",
                "drops",
                "slow disconnects (4001)",
                "server CPU % (of one core)",
                "load-gen CPU s",
                "p99 <= 50 ms, no drop",
            ],
            rows,
        )
        out.append("")
    return out


def _churn(results: dict[str, Any]) -> list[str]:
    runs = results["scenarios"].get("churn", [])
    if not runs:
        return []
    out = ["## d. Churn (Herald)", ""]
    for r in runs:
        out.append(
            f"Each cycle: TCP connect, upgrade, `connect`, `subscribe` to `question:1`, wait "
            f"for the reply, close handshake, until the server closes TCP. {r['workers']} "
            "worker(s)."
        )
        out.append("")
        rows = [
            [
                s["target_rate_per_s"],
                s["achieved_per_s"],
                s["launched"],
                s["completed"],
                s["failed"],
                s["cycle"]["p50_ms"],
                s["cycle"]["p99_ms"],
                s["server_cpu_ms_per_cycle"],
                "yes" if s["sustained"] else "no",
            ]
            for s in r["steps"]
        ]
        out += _table(
            [
                "target /s",
                "achieved /s",
                "launched",
                "completed",
                "failed",
                "cycle p50 ms",
                "cycle p99 ms",
                "server CPU ms per cycle",
                "sustained",
            ],
            rows,
        )
        out.append("")
    return out


def _storm(results: dict[str, Any]) -> list[str]:
    runs = results["scenarios"].get("storm", [])
    if not runs:
        return []
    out = ["## e. Reconnect storm (Herald)", ""]
    for r in runs:
        out += [
            f"{r['opened']:,} clients (the Q&A population: {r['subscriptions']:,} "
            f"subscriptions) on {r['workers']} workers; publications keep flowing at "
            f"{r['publish_rate_per_s']}/s; the whole fleet is killed (SIGKILL, no drain) and "
            "started again on the same port; then every client reconnects at once (at most "
            f"{r['reconnect_concurrency']:,} handshakes in flight) and subscribes with `since`.",
            "",
        ]
        rows = [
            ["fleet restart (kill to ready)", f"{r['fleet_restart_s']} s"],
            [
                "time to recover (fleet ready to every client recovered)",
                f"{r['time_to_recover_s']} s",
            ],
            ["outage seen by clients (kill to recovered)", f"{r['outage_s']} s"],
            ["clients recovered", f"{r['ready_after']:,} / {r['tabs']:,}"],
            *(
                [
                    [
                        "time to 50 / 90 / 99 % of clients ready (s)",
                        " / ".join(str(v) for v in r["time_to_ready_fraction_s"].values()),
                    ]
                ]
                if "time_to_ready_fraction_s" in r
                else []
            ),
            [
                "subscriptions recovered / failed",
                f"{r['recovered_subscriptions']:,} / {r['recovery_failed']:,}",
            ],
            [
                "publications (total / while the fleet was down)",
                f"{r['publications']:,} / {r['publications_while_fleet_down']:,}",
            ],
            ["publications lost (missing + gaps)", f"{r['lost']:,}"],
            ["duplicates", f"{r['duplicates']:,}"],
            ["clients with every publication", f"{r['verify']['clients_exact']:,}"],
            ["server CPU during recovery", f"{r['server_cpu_s_during_recovery']} s"],
        ]
        out += _table(["", ""], rows)
        out.append("")
    return out


def _machine_cpu(results: dict[str, Any]) -> list[str]:
    usage = results.get("machine_cpu") or {}
    if not usage:
        return []
    rows = [
        [
            name,
            u["seconds"],
            u["machine_busy_cpu_s"],
            u["benchmark_cpu_s"],
            u["other_processes_cpu_s"],
            f"{100 * u['other_processes_share_of_machine']:.1f} %",
        ]
        for name, u in usage.items()
    ]
    return [
        "## The machine during the run",
        "",
        "CPU of the whole machine (/proc/stat) against the CPU of this benchmark's own process "
        "tree (servers, Redis, load processes, coordinator): what other processes took "
        "meanwhile competed with the measurement.",
        "",
        *_table(
            [
                "scenario",
                "seconds",
                "machine busy CPU-s",
                "benchmark CPU-s",
                "other CPU-s",
                "other share of the machine",
            ],
            rows,
        ),
        "",
    ]


def build_report(results: dict[str, Any], source: Path, out: Path) -> str:
    plots = _plots(results, out)
    lines = _header(results, source) + _bars(results)
    if plots:
        lines += ["## Plots", ""]
        for title, key in (
            ("Q&A mix latency CDF", "latency_cdf"),
            ("Broadcast against connections", "broadcast"),
            ("Memory per connection against connections", "memory"),
        ):
            if key in plots:
                lines += [f"![{title}]({plots[key]})", ""]
    lines += _idle(results) + _broadcast(results) + _ratios(results)
    lines += _qa(results) + _churn(results) + _storm(results)
    lines += _machine_cpu(results)
    notes = results.get("notes") or []
    if notes:
        lines += ["## Run notes", "", *[f"- {n}" for n in notes], ""]
    analysis = out / "ANALYSIS.md"
    if analysis.exists():
        lines += ["## Closing note (hand-written analysis)", "", analysis.read_text().strip(), ""]
    return "\n".join(lines) + "\n"


def write_report(source: Path, out: Path | None = None) -> Path:
    results = json.loads(source.read_text())
    out = out or source.parent
    out.mkdir(parents=True, exist_ok=True)
    path = out / "REPORT.md"
    path.write_text(build_report(results, source, out))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", type=Path, nargs="?", default=Path("bench/results/latest.json"))
    p.add_argument("--out", type=Path, help="directory for REPORT.md and plots")
    args = p.parse_args(argv)
    print(write_report(args.results, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
