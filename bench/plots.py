"""Figures of the benchmark results people can look at: PNGs in ``bench/results/``.

``python -m bench.plots`` redraws every figure whose JSON exists (``soak.json``,
``faults.json``, ``fanout.json``, ``backends.json``, ``peers.json``); ``python -m bench.soak`` and
``python -m bench.faults`` call it after they save. Needs the ``plots`` extra (matplotlib):
this is the only module that imports it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

RESULTS = Path(__file__).resolve().parent / "results"
MACHINE = "this project's shared 2-core machine, loopback"


def _note(fig: Figure, data: dict[str, Any]) -> None:
    measured = data.get("measured", "")
    load = data.get("load_average_5min")
    busy = f" (load average {load})" if load is not None else ""
    text = f"{MACHINE}; measured {measured}{busy}"
    fig.text(0.99, 0.005, text, ha="right", va="bottom", fontsize=8)


def _save(fig: Figure, name: str) -> Path:
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


#: plain numbers on log axes (10, 20, 50 rather than 2x10^1)
PLAIN = FuncFormatter(lambda value, _pos: f"{value:,g}")
#: between powers of ten, only 2s and 5s (20, 50, 200, ...)
MINOR = FuncFormatter(lambda value, _pos: f"{value:,g}" if f"{value:g}"[0] in "25" else "")


def _plain(ax: Axes) -> None:
    ax.yaxis.set_major_formatter(PLAIN)
    ax.yaxis.set_minor_formatter(MINOR)
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _shade(ax: Axes, window: list[float] | None) -> None:
    if window:
        ax.axvspan(window[0], max(window[1], window[0] + 0.3), color="tab:red", alpha=0.15)


def plot_soak(data: dict[str, Any]) -> Path:
    """Resident memory, events/s and event latency over the soak run."""
    rows = data["timeline"]
    t = [r["t"] for r in rows]
    fig, (mem, rate, lat) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    fig.suptitle(
        f"make soak: {data['tabs']:,} tabs with live streams, {data['seconds']:g} s, "
        f"{data.get('backend', '')} backend\n"
        f"{data['events']:,} events acknowledged; {sum(data['errors'].values())} errors; "
        f"{data['stale_tabs']} stale tabs; {data['lost_acknowledged']} lost"
    )
    mem.plot(t, [r["rss_mib"] for r in rows], color="tab:blue", label="RSS of the server(s)")
    start = data["memory_mib"]["start"]
    mem.axhline(start * 1.1, color="tab:red", linestyle=":", label="target: within +10% of warm-up")
    mem.legend(loc="lower right", fontsize=8)
    mem.set_ylabel("server RSS (MiB)")
    mem.set_ylim(0, max(start * 1.1, max(r["rss_mib"] for r in rows)) * 1.15)
    mem.set_title(
        f"resident memory (growth after warm-up {data['memory_growth']:+.1%})", fontsize=10
    )
    rate.plot(t, [r["events"] for r in rows], color="tab:green")
    rate.set_ylabel("events acknowledged / s")
    rate.set_ylim(bottom=0)
    p50 = [r["p50_ms"] for r in rows]
    p99 = [r["p99_ms"] for r in rows]
    lat.plot(t, [math.nan if v is None else v for v in p50], label="p50", color="tab:blue")
    lat.plot(t, [math.nan if v is None else v for v in p99], label="p99", color="tab:orange")
    lat.set_yscale("log")
    _plain(lat)
    lat.set_ylabel("event latency (ms, log)")
    lat.set_xlabel("time since the load started (s)")
    lat.legend(loc="lower right", ncol=2, fontsize=8)
    for ax in (mem, rate, lat):
        ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    _note(fig, data)
    return _save(fig, "soak")


def plot_faults(data: dict[str, Any]) -> Path:
    """One panel per fault scenario: events/s and p99 latency over time, the fault shaded."""
    names = [n for n in data if isinstance(data[n], dict) and "timeline" in data[n]]
    cols = 2
    rows_n = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(12, 2.6 * rows_n + 1), squeeze=False)
    fig.suptitle(
        "Faults under load: events acknowledged per second (green) and p99 event latency "
        "(orange, log scale); the fault is shaded red"
    )
    for ax, name in zip(axes.flat, names, strict=False):
        r = data[name]
        rows = r["timeline"]
        t = [row["t"] for row in rows]
        ax.plot(t, [row["events"] for row in rows], color="tab:green")
        ax.set_ylim(bottom=0)
        ax.set_ylabel("events / s")
        ax.set_xlabel("time (s)")
        _shade(ax, r.get("fault_window_s"))
        p99 = ax.twinx()
        p99.plot(
            t,
            [math.nan if row["p99_ms"] is None else row["p99_ms"] for row in rows],
            color="tab:orange",
        )
        p99.set_yscale("log")
        _plain(p99)
        p99.set_ylabel("p99 latency (ms)")
        errors = sum(r["errors"].values())
        ax.set_title(
            f"{name} ({'PASS' if r.get('passed') else 'MISS'}): lost {r['lost_acknowledged']}, "
            f"errors {errors} "
            f"(after recovery {r['errors_after_recovery']}), stale tabs {r['stale_tabs']}"
            + (f"\n{r['bound']}" if "bound" in r else ""),
            fontsize=9,
        )
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    _note(fig, data)
    return _save(fig, "faults")


def plot_fanout(data: dict[str, Any]) -> Path:
    """Time to deliver one change to N live streams, against a bare asyncio baseline."""
    sizes = data["sizes"]
    n = [row["n"] for row in sizes]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(
        n, [row["median_ms"] for row in sizes], "o-", color="tab:blue", label="faststate median"
    )
    ax.plot(n, [row["p99_ms"] for row in sizes], "o--", color="tab:blue", label="faststate p99")
    ax.plot(n, [row["bare_median_ms"] for row in sizes], "s-", color="gray", label="bare median")
    ax.plot(n, [row["bare_p99_ms"] for row in sizes], "s--", color="gray", label="bare p99")
    ax.axhline(100, color="tab:red", linewidth=0.8, linestyle=":", label="target at 10,000: 100 ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain(ax)
    ax.set_xticks(n, [f"{x:,}" for x in n])
    ax.set_xlabel("live streams N (log)")
    ax.set_ylabel("time to deliver one change to all N (ms, log)")
    ax.set_title(
        "Fan-out: one GLOBAL change to N in-process streams\n"
        "bare = asyncio queues, one per stream, with the same payload"
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _note(fig, data)
    return _save(fig, "fanout")


def plot_backends(data: dict[str, Any]) -> Path:
    """Events per second over loopback for each backend."""
    rates = data["events_per_s"]
    names = list(rates)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bars = ax.bar(names, [rates[k] for k in names], color=["tab:blue", "tab:green", "tab:red"])
    ax.bar_label(bars, fmt="{:,.0f}")
    ax.set_ylabel("events acknowledged / s")
    ax.set_xlabel("backend (one uvicorn worker)")
    ax.set_title(f"Event throughput per backend (wrk, {data.get('connections', '?')} connections)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _note(fig, data)
    return _save(fig, "backends")


def plot_peers(data: dict[str, Any]) -> Path:
    """The same counter increment served by faststate_mw and its peers: events/s and CPU."""
    rates = data["events_per_s"]
    cpu = data.get("cpu_us_per_event", {})
    names = list(rates)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    bars = left.barh(names, [rates[k] for k in names], color="tab:blue")
    left.bar_label(bars, fmt="{:,.0f}")
    left.set_xlabel("events / s (wrk over loopback, one process each)")
    left.invert_yaxis()
    bars = right.barh(names, [cpu.get(k, 0.0) for k in names], color="tab:orange")
    right.bar_label(bars, fmt="{:,.1f}")
    right.set_xlabel("server CPU per event (us)")
    right.invert_yaxis()
    right.set_yticklabels([])
    fig.suptitle("Peers: one counter increment per POST")
    for ax in (left, right):
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _note(fig, data)
    return _save(fig, "peers")


DRAW = {
    "soak": plot_soak,
    "faults": plot_faults,
    "fanout": plot_fanout,
    "backends": plot_backends,
    "peers": plot_peers,
}


def draw_all() -> list[Path]:
    """Draw the figure of every result file that exists; the PNGs written."""
    out = []
    for name, draw in DRAW.items():
        data = _load(name)
        if data is not None:
            out.append(draw(data))
    return out


if __name__ == "__main__":
    for written in draw_all():
        print(f"plot: {written}")
