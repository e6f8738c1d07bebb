#!/usr/bin/env python3
"""Turns one run of dolphin-vs-centrifugo.sh into tables and plots.

    centrifugo-report.py RESULTS.jsonl [--out DIR]

Prints Markdown tables (fan-out per offered rate, the highest sustainable rate of each
server, the catch-up storm, memory per idle connection), each with the Dolphin/Centrifugo ratio, and writes
DIR/fanout-latency.png (p99 latency against offered load) and DIR/fanout-efficiency.png
(deliveries per server CPU second against offered load).

A rate is sustained when every send was taken, nothing was lost, duplicated or out of order,
deliveries kept up with the offered load (at least 95 % of sent x members per second), and
the p99 latency stayed under one second.
"""

import argparse
import json
import os
from collections import defaultdict


def load(path):
    rows = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                row = json.loads(line)
                rows[row["scenario"]].append(row)
    return rows


def sustained(row):
    expected = row["sent"] * row["members"] / row["seconds"]
    return (
        row["taken"] == row["sent"]
        and row["lost"] == 0
        and row["duplicated"] == 0
        and row["out_of_order"] == 0
        and row["deliveries_per_second"] >= 0.95 * expected
        and row["latency"]["p99_ms"] < 1000
    )


def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"


def fanout_table(rows):
    by = defaultdict(dict)
    for row in rows:
        by[row["offered_per_second"]][row["target"]] = row
    lines = [
        "| offered msg/s | members | system | deliveries/s | p50 | p99 | p99.9 | server CPU s "
        "| deliveries per CPU s | peak RSS MiB | lost / dup / out of order |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    ratios = [
        "| offered msg/s | deliveries per CPU s, Dolphin ÷ Centrifugo | p99, Dolphin ÷ Centrifugo |",
        "| ---: | ---: | ---: |",
    ]
    for rate in sorted(by):
        for target in ("dolphin", "centrifugo"):
            row = by[rate].get(target)
            if not row:
                continue
            lat = row["latency"]
            lines.append(
                f"| {rate} | {row['members']} | {target} | {row['deliveries_per_second']:.0f} "
                f"| {lat['p50_ms']:.2f} ms | {lat['p99_ms']:.2f} ms | {lat['p999_ms']:.2f} ms "
                f"| {row['server_cpu_seconds']:.2f} | {row['deliveries_per_cpu_second']:.0f} "
                f"| {row['server_peak_rss_bytes'] / 2**20:.0f} "
                f"| {row['lost']} / {row['duplicated']} / {row['out_of_order']} |"
            )
        d, c = by[rate].get("dolphin"), by[rate].get("centrifugo")
        if d and c:
            ratios.append(
                f"| {rate} | {ratio(d['deliveries_per_cpu_second'], c['deliveries_per_cpu_second'])} "
                f"| {ratio(d['latency']['p99_ms'], c['latency']['p99_ms'])} |"
            )
    return "\n".join(lines), "\n".join(ratios)


def sustainable_table(rows):
    best = {}
    for row in rows:
        if sustained(row):
            target = row["target"]
            if target not in best or row["offered_per_second"] > best[target]["offered_per_second"]:
                best[target] = row
    lines = [
        "| system | highest sustained offered msg/s | deliveries/s | p99 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for target in ("dolphin", "centrifugo"):
        row = best.get(target)
        if row:
            lines.append(
                f"| {target} | {row['offered_per_second']} | {row['deliveries_per_second']:.0f} "
                f"| {row['latency']['p99_ms']:.2f} ms |"
            )
        else:
            lines.append(f"| {target} | none of the rates tried | | |")
    return "\n".join(lines)


def pairs_table(rows):
    by = {row["target"]: row for row in rows}
    lines = [
        "| system | pairs | offered msg/s | deliveries/s | p50 | p99 | server CPU s "
        "| deliveries per CPU s | peak RSS MiB | lost / dup / out of order |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for target in ("dolphin", "centrifugo"):
        row = by.get(target)
        if row:
            lat = row["latency"]
            lines.append(
                f"| {target} | {row['pairs']} | {row['offered_per_second']} "
                f"| {row['deliveries_per_second']:.0f} | {lat['p50_ms']:.2f} ms "
                f"| {lat['p99_ms']:.2f} ms | {row['server_cpu_seconds']:.2f} "
                f"| {row['deliveries_per_cpu_second']:.0f} "
                f"| {row['server_peak_rss_bytes'] / 2**20:.0f} "
                f"| {row['lost']} / {row['duplicated']} / {row['out_of_order']} |"
            )
    if "dolphin" in by and "centrifugo" in by:
        d, c = by["dolphin"], by["centrifugo"]
        lines.append("")
        lines.append(
            "Deliveries per CPU s, Dolphin ÷ Centrifugo: "
            + ratio(d["deliveries_per_cpu_second"], c["deliveries_per_cpu_second"])
            + "; p99: "
            + ratio(d["latency"]["p99_ms"], c["latency"]["p99_ms"])
        )
    return "\n".join(lines)


def catchup_table(rows):
    by = {row["target"]: row for row in rows}
    lines = [
        "| system | members | missed each | storm | catch-up p50 | p99 | server CPU s "
        "| incomplete / extra |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for target in ("dolphin", "centrifugo"):
        row = by.get(target)
        if row:
            lines.append(
                f"| {target} | {row['members']} | {row['missed']} | {row['storm_seconds']:.2f} s "
                f"| {row['catch_up']['p50_ms']:.1f} ms | {row['catch_up']['p99_ms']:.1f} ms "
                f"| {row['server_cpu_seconds']:.2f} | {row['incomplete']} / {row['extra']} |"
            )
    if "dolphin" in by and "centrifugo" in by:
        lines.append("")
        lines.append(
            "Storm time, Dolphin ÷ Centrifugo: "
            + ratio(by["dolphin"]["storm_seconds"], by["centrifugo"]["storm_seconds"])
        )
    return "\n".join(lines)


def connections_table(rows):
    by = {row["target"]: row for row in rows}
    lines = [
        "| system | idle connections | server RSS before → after | bytes per connection |",
        "| --- | ---: | ---: | ---: |",
    ]
    for target in ("dolphin", "centrifugo"):
        row = by.get(target)
        if row:
            lines.append(
                f"| {target} | {row['connections']} | {row['rss_before_bytes'] / 2**20:.0f} → "
                f"{row['rss_after_bytes'] / 2**20:.0f} MiB | {row['bytes_per_connection']:.0f} |"
            )
    if "dolphin" in by and "centrifugo" in by:
        lines.append("")
        lines.append(
            "Memory per idle connection, Dolphin ÷ Centrifugo: "
            + ratio(by["dolphin"]["bytes_per_connection"], by["centrifugo"]["bytes_per_connection"])
        )
    return "\n".join(lines)


def plots(rows, out, suffix=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = defaultdict(list)
    for row in rows:
        series[row["target"]].append(row)
    for name, key, label in (
        ("fanout-latency.png", lambda r: r["latency"]["p99_ms"], "p99 send→push latency (ms)"),
        (
            "fanout-efficiency.png",
            lambda r: r["deliveries_per_cpu_second"],
            "deliveries per server CPU second",
        ),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        for target, points in sorted(series.items()):
            points.sort(key=lambda r: r["offered_per_second"])
            ax.plot(
                [r["offered_per_second"] for r in points],
                [key(r) for r in points],
                marker="o",
                label=target,
            )
        ax.set_xlabel("offered messages per second (room of %d)" % rows[0]["members"])
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        stem, ext = os.path.splitext(name)
        fig.savefig(os.path.join(out, stem + suffix + ext), dpi=110)
        plt.close(fig)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    rows = load(args.results)
    os.makedirs(args.out, exist_ok=True)
    setups = sorted({(r["target"], r.get("setup", "?")) for rs in rows.values() for r in rs})
    if setups:
        print("Setups: " + ", ".join(f"{target} {setup}" for target, setup in setups) + "\n")
    suffix = "" if all(r.get("setup") in (None, "dev", "memory") for rs in rows.values() for r in rs) else "-redis"
    if rows["fanout"]:
        table, ratios = fanout_table(rows["fanout"])
        print("### Fan-out\n")
        print(table + "\n")
        print(ratios + "\n")
        print("### Highest sustained rate\n")
        print(sustainable_table(rows["fanout"]) + "\n")
        plots(rows["fanout"], args.out, suffix)
    if rows["pairs"]:
        print("### Pairs\n")
        print(pairs_table(rows["pairs"]) + "\n")
    if rows["catchup"]:
        print("### Catch-up storm\n")
        print(catchup_table(rows["catchup"]) + "\n")
    if rows["connections"]:
        print("### Idle connections\n")
        print(connections_table(rows["connections"]) + "\n")


if __name__ == "__main__":
    main()
