"""Plots the CSVs of `tailsift-bench-curves all` (loadtest/curves.sh) as 800x500 PNGs.

Usage: python plot_curves.py RESULTS_DIR OUT_DIR
"""
import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(d, name):
    with open(Path(d) / f"{name}.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def fig(title, xlabel, ylabel, logx=True):
    f, ax = plt.subplots(figsize=(8, 5), dpi=100)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    ax.grid(True, which="major", alpha=0.3)
    return f, ax


def save(f, ax, out, name):
    if ax.get_yscale() == "linear":
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.3)
    ax.legend(loc="upper left")
    f.tight_layout()
    f.savefig(Path(out) / f"{name}.png")
    plt.close(f)


def main(src, out):
    r = rows(src, "inflight")
    x = [p["traces_in_flight"] for p in r]
    f, ax = fig("Sampler engine: cost vs traces in flight (4 spans each)", "traces in flight", "ns of CPU per span")
    ax.plot(x, [p["stream_cpu_ns_per_span"] for p in r], "o-", label="CPU per streamed span (buffer, decide, export)")
    ax.plot(x, [p["prefill_cpu_ns_per_span"] for p in r], "s--", label="CPU per span while filling (on_record only)")
    ax2 = ax.twinx()
    ax2.plot(x, [p["rss_bytes_per_span"] for p in r], "^:", color="tab:red", label="RSS bytes per buffered span")
    ax2.plot(x, [p["buffered_bytes_per_span"] for p in r], "v:", color="tab:purple", label="encoded bytes per buffered span")
    ax2.set_ylabel("bytes per buffered span")
    ax2.set_ylim(bottom=0, top=ax2.get_ylim()[1] * 1.6)
    ax2.legend(loc="upper right")
    save(f, ax, out, "inflight")

    r = rows(src, "spans_per_trace")
    f, ax = fig("Sampler engine: CPU per span vs spans per trace (1 span per record)", "spans per trace", "ns of CPU per span")
    ax.plot([p["spans_per_trace"] for p in r], [p["cpu_ns_per_span"] for p in r], "o-", label="CPU per span (buffer, decide, export)")
    ax.plot([p["spans_per_trace"] for p in r], [p["tick_cpu_ns_per_span"] for p in r], "s--", label="of which in on_tick (deciding)")
    save(f, ax, out, "spans_per_trace")

    r = rows(src, "partitions")
    f, ax = fig("Sampler engine: CPU per span vs partitions owned (same traffic)", "partitions owned", "ns of CPU per span")
    ax.plot([p["partitions"] for p in r], [p["cpu_ns_per_span"] for p in r], "o-", label="CPU per span")
    ax.plot([p["partitions"] for p in r], [p["tick_cpu_ns_per_span"] for p in r], "s--", label="of which in on_tick (deciding)")
    ax2 = ax.twinx()
    ax2.plot([p["partitions"] for p in r], [p["idle_tick_us"] for p in r], "^:", color="tab:red", label="idle on_tick, µs")
    ax2.plot([p["partitions"] for p in r], [p["after_stream_tick_us"] for p in r], "v:", color="tab:purple", label="on_tick popping stale timers, µs")
    ax2.set_ylabel("µs per on_tick (nothing buffered)")
    ax2.set_ylim(bottom=0, top=ax2.get_ylim()[1] * 1.6)
    ax2.legend(loc="upper right")
    save(f, ax, out, "partitions")

    r = rows(src, "policy")
    f, ax = fig("Sampler engine: cost vs policy size (regex string_attribute rules)", "rules", "ns of CPU per span")
    ax.plot([p["rules"] for p in r], [p["cpu_ns_per_span"] for p in r], "o-", label="CPU per span (4 spans per trace)")
    ax2 = ax.twinx()
    ax2.plot([p["rules"] for p in r], [p["decide_us_per_trace"] for p in r], "s--", color="tab:red", label="decide, µs per trace")
    ax2.plot([p["rules"] for p in r], [p["compile_ms"] for p in r], "^:", color="tab:purple", label="compile, ms (once)")
    ax2.set_ylabel("µs per trace / ms per compile")
    ax2.set_ylim(bottom=0, top=ax2.get_ylim()[1] * 1.6)
    ax2.legend(loc="upper right")
    save(f, ax, out, "policy")

    r = rows(src, "rebalance")
    f, ax = fig("Sampler engine: handover vs partitions moved (of 100 owned)", "partitions moved", "ms of CPU (log)")
    ax.set_yscale("log")
    for n in sorted({p["traces_in_flight"] for p in r}):
        pts = [p for p in r if p["traces_in_flight"] == n]
        ax.plot([p["partitions_moved"] for p in pts], [p["replay_cpu_ms"] for p in pts], "o-", label=f"new owner replay, {int(n):,} traces in flight")
        ax.plot([p["partitions_moved"] for p in pts], [p["revoke_cpu_us"] / 1000 for p in pts], "s--", label=f"old owner revoke, {int(n):,} traces in flight")
    save(f, ax, out, "rebalance")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
