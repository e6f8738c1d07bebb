"""Tests of results.py: reading etcd's benchmark report and building the comparison table.

    python3 -m unittest discover -s e2e/bench -p 'test_*.py'

testdata/etcd-put.txt is the stdout of a real `benchmark --precise put --total 1500` run
against etcd 3.7.0.
"""

import json
import os
import tempfile
import unittest

import results

HERE = os.path.dirname(os.path.abspath(__file__))


def sample():
    with open(os.path.join(HERE, "testdata", "etcd-put.txt"), encoding="utf-8") as f:
        return f.read()


class ParseEtcd(unittest.TestCase):
    def test_reads_the_total_time_and_percentiles_of_a_clean_run(self):
        run = results.parse_etcd(sample(), concurrency=4, total=1500)
        self.assertEqual(run["concurrency"], 4)
        self.assertEqual(run["messages"], 1500)
        self.assertEqual(run["errors"], 0)
        self.assertAlmostEqual(run["seconds"], 0.756503204)
        self.assertAlmostEqual(run["messages_per_second"], 1500 / 0.756503204)
        self.assertEqual(run["latency"], {"p50_ms": 1.502, "p99_ms": 11.971, "p999_ms": 85.395})

    def test_does_not_count_histogram_buckets_as_errors(self):
        # The histogram's lines hold "[count]" too; only the error section may be summed.
        self.assertIn("[1476]", sample())
        self.assertEqual(results.parse_etcd(sample(), 4, 1500)["errors"], 0)

    def test_leaves_failed_puts_out_of_the_rate(self):
        text = sample() + (
            "\nError distribution:\n"
            "  [7]\tetcdserver: request timed out\n"
            "  [3]\trpc error: code = Unavailable\n"
        )
        run = results.parse_etcd(text, 4, 1500)
        self.assertEqual(run["errors"], 10)
        self.assertEqual(run["messages"], 1490)
        self.assertAlmostEqual(run["messages_per_second"], 1490 / 0.756503204)

    def test_takes_the_slowest_put_when_the_report_has_no_99_9_percentile(self):
        text = "\n".join(
            line for line in sample().splitlines() if not line.strip().startswith("99.9%")
        )
        self.assertEqual(results.parse_etcd(text, 4, 1500)["latency"]["p999_ms"], 85.395)

    def test_refuses_output_without_a_summary(self):
        with self.assertRaisesRegex(ValueError, "no 'Total:' line"):
            results.parse_etcd("dial error: connection refused\n", 4, 1500)


class Table(unittest.TestCase):
    def write(self, runs):
        handle, path = tempfile.mkstemp(suffix=".jsonl")
        self.addCleanup(os.unlink, path)
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            for run in runs:
                f.write(json.dumps(run) + "\n")
        return path

    def run_line(self, system, concurrency, rate, errors=0):
        return {
            "system": system,
            "concurrency": concurrency,
            "messages": int(rate * 10),
            "errors": errors,
            "seconds": 10.0,
            "messages_per_second": rate,
            "latency": {"p50_ms": 1.0, "p99_ms": 2.0, "p999_ms": 3.0},
        }

    def test_divides_dolphin_by_etcd_per_level_in_ascending_order(self):
        path = self.write(
            [
                self.run_line("dolphin", 16, 1500.0),
                self.run_line("dolphin", 1, 400.0),
                self.run_line("etcd", 1, 800.0),
                self.run_line("etcd", 16, 1000.0),
            ]
        )
        rows = results.table(path).splitlines()
        self.assertTrue(rows[2].startswith("| 1 | 400 |") and rows[2].endswith("| 0.50 |"))
        self.assertTrue(rows[3].startswith("| 16 | 1500 |") and rows[3].endswith("| 1.50 |"))

    def test_marks_a_level_that_one_system_lacks(self):
        path = self.write([self.run_line("dolphin", 256, 4000.0)])
        self.assertTrue(results.table(path).splitlines()[2].endswith("| - | - | - | - |"))

    def test_names_runs_with_failed_requests_below_the_table(self):
        path = self.write(
            [self.run_line("dolphin", 1, 400.0), self.run_line("etcd", 1, 800.0, errors=5)]
        )
        self.assertIn("etcd at concurrency 1: 5 failed requests", results.table(path))


if __name__ == "__main__":
    unittest.main()
