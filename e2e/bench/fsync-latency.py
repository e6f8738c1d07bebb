#!/usr/bin/env python3
"""Measures how long the disk under a folder takes to make an appended write durable.

    fsync-latency.py [--dir DIR] [--seconds 5] [--bytes 4096]

Appends BYTES to a new file in DIR (default: TMPDIR) and calls fdatasync after each write,
as a Raft log does per commit, for SECONDS; prints one JSON line with the count and the
latency percentiles in milliseconds. Its sequential rate bounds any store that syncs once per
commit on that disk; batching several commits per sync is how such a store goes past it.
The file is removed at the end.

Standard library only.
"""

import argparse
import json
import os
import tempfile
import time


def percentile(sorted_values, fraction):
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def measure(folder, seconds, size):
    block = os.urandom(size)
    latencies = []
    fd, path = tempfile.mkstemp(prefix="fsync-latency-", dir=folder)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            os.write(fd, block)
            os.fdatasync(fd)
            latencies.append(time.monotonic() - started)
    finally:
        os.close(fd)
        os.unlink(path)
    return latencies


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--bytes", type=int, default=4096)
    args = parser.parse_args()
    if args.seconds <= 0 or args.bytes <= 0:
        parser.error("--seconds and --bytes must be positive")

    latencies = sorted(measure(args.dir, args.seconds, args.bytes))
    total = sum(latencies)

    def ms(fraction):
        return round(percentile(latencies, fraction) * 1000.0, 3)

    print(
        json.dumps(
            {
                "dir": args.dir,
                "bytes": args.bytes,
                "syncs": len(latencies),
                "syncs_per_second": round(len(latencies) / total, 1) if total > 0 else 0.0,
                "latency": {"p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999)},
            },
            separators=(",", ":"),
        )
    )


if __name__ == "__main__":
    main()
