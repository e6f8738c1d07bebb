#!/usr/bin/env python3
"""Turns benchmark output into the JSON lines of `dolphin bench sequencer` and compares them.

    results.py etcd-json --concurrency N --total T < benchmark-output
        one JSON line, in the shape Dolphin prints, from the text of etcd's `benchmark put`
    results.py table RESULTS.jsonl
        a markdown table of Dolphin against etcd, from lines tagged "system"

Standard library only, so that it runs on any machine with python3.
"""

import argparse
import json
import re
import sys

# etcd's report prints seconds; Dolphin's histogram has microsecond resolution, so both are
# given in milliseconds to three decimals.
MS_DECIMALS = 3

SECONDS = r"([0-9.eE+-]+) secs"


def parse_etcd(text, concurrency, total):
    """Reads the report of etcd's `benchmark put` (pkg/report in etcd's repository)."""
    match = re.search(r"^\s*Total:\s*" + SECONDS, text, re.M)
    if match is None:
        raise ValueError("found no 'Total:' line: the benchmark printed no summary")
    seconds = float(match.group(1))

    percentiles = {}
    for pct, value in re.findall(r"^\s*([0-9.]+)% in " + SECONDS, text, re.M):
        percentiles[pct] = float(value)
    slowest = re.search(r"^\s*Slowest:\s*" + SECONDS, text, re.M)

    # The error lines are "  [count]<tab>message" after the heading; the histogram's lines
    # also hold "[count]", so only the section after the heading counts.
    errors = 0
    if "Error distribution:" in text:
        section = text.split("Error distribution:", 1)[1]
        errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]\t", section, re.M))

    def ms(pct):
        # The report leaves out a percentile it did not reach (99.9 with under 1000
        # requests); the slowest request stands in for it.
        value = percentiles.get(pct)
        if value is None and slowest is not None:
            value = float(slowest.group(1))
        return round((value or 0.0) * 1000.0, MS_DECIMALS)

    messages = max(total - errors, 0)
    return {
        "concurrency": concurrency,
        "messages": messages,
        "errors": errors,
        "seconds": seconds,
        "messages_per_second": messages / seconds if seconds > 0 else 0.0,
        "latency": {"p50_ms": ms("50"), "p99_ms": ms("99"), "p999_ms": ms("99.9")},
    }


def read_results(path):
    """Maps (system, concurrency) to the line of that run."""
    runs = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                run = json.loads(line)
                runs[(run["system"], run["concurrency"])] = run
    return runs


def table(path):
    runs = read_results(path)
    levels = sorted({concurrency for _, concurrency in runs})
    rows = [
        "| concurrency | Dolphin msg/s | Dolphin p50 | Dolphin p99 "
        "| etcd put/s | etcd p50 | etcd p99 | Dolphin ÷ etcd |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def cells(run):
        if run is None:
            return ["-", "-", "-"]
        latency = run["latency"]
        return [
            f"{run['messages_per_second']:.0f}",
            f"{latency['p50_ms']:.2f} ms",
            f"{latency['p99_ms']:.2f} ms",
        ]

    for level in levels:
        dolphin = runs.get(("dolphin", level))
        etcd = runs.get(("etcd", level))
        ratio = "-"
        if dolphin and etcd and etcd["messages_per_second"] > 0:
            ratio = f"{dolphin['messages_per_second'] / etcd['messages_per_second']:.2f}"
        rows.append("| " + " | ".join([str(level), *cells(dolphin), *cells(etcd), ratio]) + " |")

    # Failed requests are left out of the rates; say so where there were any.
    for (system, level), run in sorted(runs.items()):
        if run.get("errors"):
            rows.append("")
            rows.append(f"{system} at concurrency {level}: {run['errors']} failed requests")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    etcd = commands.add_parser("etcd-json", help="a JSON line from etcd's benchmark output")
    etcd.add_argument("--concurrency", type=int, required=True)
    etcd.add_argument("--total", type=int, required=True, help="the --total the run was given")
    compare = commands.add_parser("table", help="a markdown table from a results file")
    compare.add_argument("results")
    args = parser.parse_args()

    if args.command == "etcd-json":
        try:
            run = parse_etcd(sys.stdin.read(), args.concurrency, args.total)
        except ValueError as error:
            sys.exit(f"results.py: failed to read the benchmark output: {error}")
        print(json.dumps(run, separators=(",", ":")))
    else:
        print(table(args.results))


if __name__ == "__main__":
    main()
