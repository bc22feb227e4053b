"""The report's plots (matplotlib, Agg backend), each a PNG beside REPORT.md: the Q&A mix
latency CDF; broadcast deliveries/s and deliveries per server CPU-second against
connections; memory per connection against connections. Input: the results JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.bars import ResultsJson, sorted_runs

COLORS = {"floor": "#7f7f7f", "herald": "#d62728", "socketio": "#1f77b4"}


def make_plots(results: ResultsJson, out: Path) -> dict[str, str]:
    """The plots *results* has data for, written into *out*: plot key -> file name."""
    import matplotlib

    matplotlib.use("Agg")
    made: dict[str, str] = {}
    for key, plot in (
        ("latency_cdf", _latency_cdf),
        ("broadcast", _broadcast),
        ("memory", _memory),
    ):
        name = plot(results, out)
        if name is not None:
            made[key] = name
    return made


def _label(run: dict[str, Any]) -> str:
    return f"{run['target']} ({run['workers']} worker{'s' if run['workers'] > 1 else ''})"


def _latency_cdf(results: ResultsJson, out: Path) -> str | None:
    import matplotlib.pyplot as plt

    qa = [s for r in results["scenarios"].get("qa_mix", []) for s in r["steps"]]
    if not any(s.get("latency_cdf") for s in qa):
        return None
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
    return _save(fig, out / "qa-latency-cdf.png")


def _broadcast(results: ResultsJson, out: Path) -> str | None:
    import matplotlib.pyplot as plt

    broadcast = sorted_runs(results, "broadcast")
    if not broadcast:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    first_window = (results["settings"].get("broadcast_windows") or [None])[0]
    for r in broadcast:
        pts = sorted(
            (p for p in r["points"] if first_window is None or p.get("window") == first_window),
            key=lambda p: p["connections"],
        )
        style = "-o" if r["workers"] == 1 else "s"
        xs = [p["connections"] for p in pts]
        color = COLORS.get(r["target"])
        a1.plot(xs, [p["deliveries_per_s"] for p in pts], style, label=_label(r), color=color)
        a2.plot(
            xs,
            [p["deliveries_per_server_cpu_s"] for p in pts],
            style,
            label=_label(r),
            color=color,
        )
    a1.set_title(f"broadcast (window {first_window}): deliveries per second")
    a2.set_title("broadcast: deliveries per server CPU-second")
    for a in (a1, a2):
        a.set_xlabel("connections")
        a.set_xscale("log")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
        a.set_ylim(bottom=0)
    return _save(fig, out / "broadcast.png")


def _memory(results: ResultsJson, out: Path) -> str | None:
    import matplotlib.pyplot as plt

    idle = sorted_runs(results, "idle")
    if not idle:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in idle:
        pts = sorted(r["points"], key=lambda p: p["connections"])
        ax.plot(
            [p["connections"] for p in pts],
            [p["rss_per_connection_kib"] for p in pts],
            "-o" if r["workers"] == 1 else "s",
            label=_label(r),
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
    return _save(fig, out / "memory.png")


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name
