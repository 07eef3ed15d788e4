#!/usr/bin/env python3
"""Turns run.sh's results TSV into markdown tables (stdout) and a PNG chart.

Usage: report.py RESULTS.tsv LOGICAL_BYTES MODE CORPUS_DIR
Chart: benches/corpus/results-MODE.png (stored bytes per tool, ingest MB/s),
skipped with a note if matplotlib is missing (pip install matplotlib).
"""
import csv, os, sys

tsv, logical, mode, corpus = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(tsv) as f:
    rows = list(csv.reader(f, delimiter="\t"))
head, rows = rows[0], rows[1:]
chosen = head[8:]
MB = 1e6


def f2(x):
    return "-" if x == "-" else f"{float(x):.2f}"


print(f"Logical bytes (distinct layer tars): {logical} ({logical / MB:.1f} MB)\n")
print("| tool | repository bytes | stored/logical | ingest s | ingest MB/s | ingest peak RSS MB "
      f"| restore s ({len(chosen)} layers) | restore MB/s | byte-exact | load |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
chosen_bytes = sum(os.path.getsize(os.path.join(corpus, n + ".tar")) for n in chosen)
for r in rows:
    tool, kept, repo, ins, rss, rs, ex, ld = r[:8]
    repo = int(repo)
    mbs = "-" if ins == "-" else f"{logical / MB / max(float(ins), 0.01):.0f}"
    rss_mb = "-" if rss == "-" else f"{int(rss) / 1024:.0f}"
    note = f" ({kept})" if kept.startswith("stored_bytes") else ""
    print(f"| {tool} | {repo}{note} | {repo / logical:.3f} | {f2(ins)} | {mbs} | {rss_mb} "
          f"| {f2(rs)} | {chosen_bytes / MB / max(float(rs), 0.01):.0f} | {ex} | {ld} |")
print()
print("Restore time per chosen layer, seconds:\n")
print("| tool | " + " | ".join(chosen) + " |")
print("|---|" + "---:|" * len(chosen))
for r in rows:
    print(f"| {r[0]} | " + " | ".join(f2(x) for x in r[8:]) + " |")

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("\n(chart skipped: matplotlib missing)", file=sys.stderr)
    sys.exit(0)
tools = [r[0] for r in rows]
stored = [int(r[2]) / MB for r in rows]
ingest = [0 if r[3] == "-" else logical / MB / max(float(r[3]), 0.01) for r in rows]
fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
colors = ["#2a7" if t.startswith("layerstore") else "#789" for t in tools]
a.bar(tools, stored, color=colors)
a.set_title(f"Repository size, MB (logical {logical / MB:.0f} MB)")
for i, v in enumerate(stored):
    a.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
b.bar(tools, ingest, color=colors)
b.set_title("Ingest MB/s of logical tar bytes (registry: n/a)")
for i, v in enumerate(ingest):
    b.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
for ax in (a, b):
    ax.tick_params(axis="x", rotation=30)
fig.suptitle(f"layerstore storage benchmark, {mode} corpus (2 shared cores, warm cache)")
fig.tight_layout()
fig.savefig(os.path.join(os.path.dirname(os.path.abspath(__file__)), f"results-{mode}.png"), dpi=100)
