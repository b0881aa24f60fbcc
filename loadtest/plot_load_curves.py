"""Plots the CSVs of loadtest/ingest-curves.sh (ingest CPU per span vs request shape) as 800x500
PNGs, and the decision-latency CSV of loadtest/bench-latency.sh when present.

Usage: python plot_load_curves.py RESULTS_DIR OUT_DIR
"""
import csv
import sys
from pathlib import Path

from plot_curves import fig, plt  # the same figure style (and matplotlib backend)


def rows(path):
    out = []
    with open(path) as f:
        for r in csv.DictReader(f):
            out.append({k: (v if k == "label" or k == "send_delay" else float(v)) for k, v in r.items()})
    return out


def save(f, ax, out, name, legend="upper right", ncol=1):
    ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.2)
    ax.legend(loc=legend, ncol=ncol)
    f.tight_layout()
    f.savefig(Path(out) / f"{name}.png")
    plt.close(f)


def main(src, out):
    src = Path(src)
    if (src / "ingest_request_size.csv").exists():
        r = rows(src / "ingest_request_size.csv")
        f, ax = fig("Ingest: CPU per span vs spans per request (256 in flight)", "spans per request", "µs of CPU per span (log)")
        ax.set_yscale("log")
        for label, style in (("saturation", "o-"), ("20k", "s--")):
            pts = [p for p in r if p["label"] == label]
            name = "as fast as it goes" if label == "saturation" else "20,000 spans/s"
            ax.plot([p["spans_per_request"] for p in pts], [p["cpu_us_per_span"] for p in pts], style, label=name)
        ax.legend(loc="upper right")
        f.tight_layout()
        f.savefig(Path(out) / "ingest_request_size.png")
        plt.close(f)
    if (src / "ingest_traces_per_request.csv").exists():
        r = rows(src / "ingest_traces_per_request.csv")
        f, ax = fig("Ingest: CPU per span vs traces (records) per 100-span request, 20,000 spans/s",
                    "records per request (one per trace)", "µs of CPU per span")
        ax.plot([p["records_per_request"] for p in r], [p["cpu_us_per_span"] for p in r], "o-", label="CPU per span")
        save(f, ax, out, "ingest_traces_per_request", legend="upper left")
    if (src / "decision_latency.csv").exists():
        r = rows(src / "decision_latency.csv")
        f, ax = fig("End to end: last span sent -> trace exported, vs load", "spans per second (sent)", "ms")
        for delay in dict.fromkeys(p["send_delay"] for p in r):
            pts = [p for p in r if p["send_delay"] == delay]
            ax.plot([p["achieved_spans_per_s"] for p in pts], [p["p50_ms"] for p in pts], "o-", label=f"p50, send_delay {delay}")
            ax.plot([p["achieved_spans_per_s"] for p in pts], [p["p99_ms"] for p in pts], "s--", label=f"p99, send_delay {delay}")
        save(f, ax, out, "decision_latency", legend="upper center", ncol=2)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
