"""PNG plots for BENCHMARKS.md from bench/results/*.json (written by rotor-loadgen).

latency_distribution.png      publish->receive latency percentiles (HDR-style x axis)
throughput_vs_connections.png max deliveries/s within p99 <= 50 ms vs connections, and p99 vs
                              deliveries/s along the 10k fan-out ramps
memory_per_connection.png     server RSS while connections open (idle scenario)

Usage: plot.py RESULTS_DIR
"""

import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Bucket layout of bench/src/histogram.rs: exact below 128 us, 64 buckets per octave above.
SUB_BITS = 7
HALF = 1 << (SUB_BITS - 1)

COLORS = {
    "rotor": "#d62728",
    "rotor-protobuf": "#ff7f0e",
    "bare": "#7f7f7f",
    "socketio": "#1f77b4",
    "nchan": "#2ca02c",
    "rotor-edge": "#9467bd",
    "rotor-direct": "#d62728",
}
LABELS = {
    "rotor": "Rotor (JSON)",
    "rotor-protobuf": "Rotor (Protobuf)",
    "bare": "bare tokio-tungstenite",
    "socketio": "Socket.IO 4 (Node)",
    "nchan": "Nchan (nginx)",
}


def bucket_upper(index):
    if index < (1 << SUB_BITS):
        return index
    shift = index // HALF - 1
    mantissa = index % HALF + HALF
    return (mantissa << shift) + (1 << shift) - 1


def cdf(sparse):
    buckets = sorted(sparse.get("buckets", []))
    total = sum(c for _, c in buckets)
    if total == 0:
        return [], []
    xs, ys, seen = [], [], 0
    for idx, count in buckets:
        seen += count
        xs.append(max(bucket_upper(idx), 1) / 1000.0)
        ys.append(seen / total)
    return xs, ys


def load(results):
    runs = {}
    for path in glob.glob(os.path.join(results, "*.json")):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "steps" in data and "name" in data:
            runs[data["name"]] = data
    return runs


def percentile_axis(ax):
    """x = 1/(1-q) on a log scale, labelled with percentiles."""
    ticks = [0.5, 0.9, 0.99, 0.999, 0.9999]
    ax.set_xscale("log")
    ax.set_xticks([1 / (1 - q) for q in ticks])
    ax.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99"])
    ax.set_xlim(1, 1 / (1 - 0.99995))


def plot_percentiles(ax, run, step, label, color, style="-"):
    xs, ys = cdf(step["histogram"])
    pts = [(1 / (1 - y), x) for x, y in zip(xs, ys) if y < 0.99999]
    if not pts:
        return
    ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", label=label, color=color,
            linestyle=style)


def latency_plot(runs, out):
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    # Solid: one channel of 1k subscribers; dashed: 1k channels of one subscriber each.
    for name, run in sorted(runs.items()):
        if run.get("scenario") not in ("latency", "spread") or not run["steps"]:
            continue
        t = run["target"]
        s = run["steps"][-1]
        spread = run["scenario"] == "spread"
        lab = (f"{LABELS.get(t, t)}{' (1k channels)' if spread else ''}: "
               f"{s['target_rate']:g} publishes/s → {s['deliveries_per_sec']:,.0f} deliveries/s")
        plot_percentiles(ax, run, s, lab, COLORS.get(t), "--" if spread else "-")
    p = next((r for r in runs.values() if r.get("scenario") == "latency" and r["steps"]), None)
    title = "Latency, one channel"
    if p:
        title = (f"{max(p['params']['rates']):.0f} msgs/s to {p['params']['conns']:,} "
                 "subscribers: one channel (solid), one channel each (dashed)")
    ax.set_title(title)
    percentile_axis(ax)
    ax.set_yscale("log")
    ax.set_ylabel("publish → receive latency (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    ax = axes[1]
    fan = {r["target"]: r for r in runs.values() if r.get("scenario") == "fanout" and r["steps"]}
    # The highest rate every target handled within the limits, for a like-for-like comparison.
    # The highest rate every server completed without loss (steps up to its saturation step).
    rates = []
    for r in fan.values():
        sat = next((s for s in r["steps"] if s["step"] == r.get("saturation_step")), None)
        rates.append(sat["target_rate"] if sat else 0)
    rate = min(rates) if rates and min(rates) > 0 else None
    for t, r in sorted(fan.items()):
        steps = [s for s in r["steps"] if s["target_rate"] == rate] if rate else []
        if not steps:
            steps = [s for s in r["steps"] if s["ok"]][-1:] or r["steps"][-1:]
        s = steps[0]
        lab = f"{LABELS.get(t, t)}: {s['deliveries_per_sec']:,.0f}/s"
        plot_percentiles(ax, r, s, lab, COLORS.get(t))
    conns = next((r["params"]["conns"] for r in fan.values()), 0)
    ax.set_title(f"Fan-out to {conns:,} connections at {rate:g} publishes/s" if rate
                 else "Fan-out")
    percentile_axis(ax)
    ax.set_yscale("log")
    ax.set_ylabel("publish → receive latency (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def throughput_plot(runs, out):
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    by_target = {}
    for r in runs.values():
        if r.get("scenario") not in ("fanout", "sweep"):
            continue
        sat = r.get("saturation_step") or r.get("best_step")
        best = next((s for s in r["steps"] if s["step"] == sat), None)
        if best is None:
            continue
        by_target.setdefault(r["target"], []).append(
            (r["connect"]["connected"], best["deliveries_per_sec"]))
    for t, pts in sorted(by_target.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                label=LABELS.get(t, t), color=COLORS.get(t))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("connections (one channel)")
    ax.set_ylabel("max deliveries/s without loss (p99 ≤ 1 s)")
    ax.set_title("Throughput vs connections")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center left")

    ax = axes[1]
    for r in sorted(runs.values(), key=lambda r: r["name"]):
        if r.get("scenario") != "fanout" or not r["steps"]:
            continue
        t = r["target"]
        xs = [s["deliveries_per_sec"] for s in r["steps"]]
        ys = [max(s["latency"]["p99"], 1) / 1000.0 for s in r["steps"]]
        ax.plot(xs, ys, marker="o", label=LABELS.get(t, t), color=COLORS.get(t))
    ax.axhline(50, color="black", linestyle="--", linewidth=0.8, label="50 ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("deliveries/s")
    ax.set_ylabel("p99 latency (ms)")
    conns = next((r["params"]["conns"] for r in runs.values() if r.get("scenario") == "fanout"),
                 0)
    ax.set_title(f"Fan-out ramp, {conns:,} connections on one channel")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def memory_plot(runs, out):
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in sorted(runs.values(), key=lambda r: r["name"]):
        if r.get("scenario") != "idle" or not r.get("memory"):
            continue
        m = r["memory"]
        t = r["target"]
        pts = [(0, m["rss_before"])] + [tuple(p) for p in m["curve"]]
        pts.append((r["connect"]["connected"], m["rss_after"]))
        pts.sort()
        lab = f"{LABELS.get(t, t)}: {m['per_conn_bytes'] / 1024:.1f} KiB/conn"
        ax.plot([p[0] for p in pts], [p[1] / 1e6 for p in pts], marker=".",
                label=lab, color=COLORS.get(t))
    ax.set_xlabel("open connections (each subscribed to one channel)")
    ax.set_ylabel("server RSS (MB)")
    ax.set_title("Memory per connection")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    results = sys.argv[1] if len(sys.argv) > 1 else "bench/results"
    runs = load(results)
    if not runs:
        print("no results to plot in", results)
        return
    latency_plot(runs, os.path.join(results, "latency_distribution.png"))
    throughput_plot(runs, os.path.join(results, "throughput_vs_connections.png"))
    memory_plot(runs, os.path.join(results, "memory_per_connection.png"))
    print("plots written to", results)


if __name__ == "__main__":
    main()
