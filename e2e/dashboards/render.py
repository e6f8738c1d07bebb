#!/usr/bin/env python3
"""Renders the overview dashboard's panels from a real load run, without Grafana.

Starts `dolphin cluster`, drives a WebSocket load (users sending to direct and group
conversations), scrapes every edge's and replica's /metrics every 2 s like Prometheus would,
evaluates the queries of dashboards/overview.json on the scraped series with a small
evaluator of the PromQL they use, and draws the panels where the dashboard places them.

    python3 -m venv ~/.cache/dolphin/dashboards-venv
    ~/.cache/dolphin/dashboards-venv/bin/pip install matplotlib websockets
    cargo build -j2 -p dolphin
    ~/.cache/dolphin/dashboards-venv/bin/python e2e/dashboards/render.py \
        --binary "$CARGO_TARGET_DIR/debug/dolphin" --out docs/images/overview.png

The evaluator knows: selectors with `=` matchers, rate and increase over a range (without
Prometheus's extrapolation to the range's edges), histogram_quantile, vector, sum, max,
min and count with `by`, the binary operators `* / - ==` with `on (...) group_left|right`,
and `or`. `$__rate_interval` is 10 s (Grafana's 4 scrape intervals, rounded up).
"""

import argparse
import asyncio
import json
import math
import os
import pathlib
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRAPE_EVERY = 2.0
RATE_INTERVAL = 10.0
# The labels Prometheus would put on every target of the operator's PodMonitor.
NAMESPACE = "local"
CLUSTER = "render"


# ---------------------------------------------------------------------------------------
# Scraping


def parse_exposition(text):
    """(series name, labels) -> value of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if "{" in head:
            name, _, rest = head.partition("{")
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', rest))
        else:
            name, labels = head, {}
        out[(name, tuple(sorted(labels.items())))] = float(value)
    return out


class Store:
    """Every scraped sample: series key -> [(time, value)]."""

    def __init__(self):
        self.series = {}
        self.times = []

    def add(self, at, target, text):
        for (name, labels), value in parse_exposition(text).items():
            labels = dict(labels)
            labels.update(target)
            labels["__name__"] = name
            key = tuple(sorted(labels.items()))
            self.series.setdefault(key, []).append((at, value))


def scrape(url):
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.read().decode()


# ---------------------------------------------------------------------------------------
# A PromQL subset


TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>\"(?:[^\"\\]|\\.)*\")|(?P<dur>\[\d+[smh]\])"
    r"|(?P<id>[a-zA-Z_][a-zA-Z0-9_:]*)|(?P<op>==|!=|=~|[-+*/(){},=>]))"
)


def tokenize(text):
    tokens, at = [], 0
    text = text.strip()
    while at < len(text):
        match = TOKEN.match(text, at)
        if not match:
            raise ValueError(f"cannot read {text[at:]!r}")
        at = match.end()
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
    return tokens


AGGREGATIONS = {"sum", "max", "min", "count"}
FUNCTIONS = {"rate", "increase", "histogram_quantile", "vector"}
PRECEDENCE = {"or": 1, "==": 2, ">": 2, "+": 3, "-": 3, "*": 4, "/": 4}


class Parser:
    def __init__(self, text):
        self.tokens = tokenize(text)
        self.at = 0

    def peek(self):
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self, expected=None):
        kind, value = self.tokens[self.at]
        if expected is not None and value != expected:
            raise ValueError(f"expected {expected}, found {value}")
        self.at += 1
        return kind, value

    def labels(self):
        self.take("(")
        out = []
        while self.peek() != ")":
            out.append(self.take()[1])
            if self.peek() == ",":
                self.take(",")
        self.take(")")
        return out

    def expr(self, min_precedence=0):
        left = self.unary()
        while self.peek() in PRECEDENCE and PRECEDENCE[self.peek()] > min_precedence:
            op = self.take()[1]
            on, group = None, None
            if self.peek() == "on":
                self.take()
                on = self.labels()
            if self.peek() in ("group_left", "group_right"):
                group = self.take()[1]
            right = self.expr(PRECEDENCE[op])
            left = ("binary", op, left, right, on, group)
        return left

    def unary(self):
        kind, value = self.take()
        if kind == "num":
            return ("number", float(value))
        if value == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if value in AGGREGATIONS:
            by = self.labels() if self.peek() == "by" and self.take() else None
            self.take("(")
            inner = self.expr()
            self.take(")")
            return ("aggregate", value, by, inner)
        if value in FUNCTIONS:
            self.take("(")
            args = [self.expr()]
            while self.peek() == ",":
                self.take(",")
                args.append(self.expr())
            self.take(")")
            return ("call", value, args)
        matchers = {}
        if self.peek() == "{":
            self.take("{")
            while self.peek() != "}":
                label = self.take()[1]
                self.take("=")
                matchers[label] = json.loads(self.take()[1])
                if self.peek() == ",":
                    self.take(",")
            self.take("}")
        window = None
        if self.at < len(self.tokens) and self.tokens[self.at][0] == "dur":
            text = self.take()[1][1:-1]
            window = float(text[:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]]
        return ("selector", value, matchers, window)


def without_name(labels):
    return tuple((k, v) for k, v in labels if k != "__name__")


def increase(samples):
    """The growth of a counter over its samples, counting resets as Prometheus does."""
    total = 0.0
    for (_, before), (_, after) in zip(samples, samples[1:]):
        total += after - before if after >= before else after
    return total


def quantile(q, buckets):
    """Prometheus's histogram_quantile over (upper bound, cumulative count) pairs."""
    buckets = sorted(buckets)
    if len(buckets) < 2 or buckets[-1][0] != math.inf or buckets[-1][1] == 0:
        return math.nan
    rank = q * buckets[-1][1]
    for i, (upper, count) in enumerate(buckets):
        if count >= rank:
            if upper == math.inf:
                return buckets[-2][0]
            lower, below = (0.0, 0.0) if i == 0 else buckets[i - 1]
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
    return math.nan


class Evaluator:
    def __init__(self, store):
        self.store = store

    def at(self, node, t):
        """An instant vector {labels: value}, or a number."""
        kind = node[0]
        if kind == "number":
            return node[1]
        if kind == "selector":
            return self.select(node, t, None)
        if kind == "call":
            return self.call(node[1], node[2], t)
        if kind == "aggregate":
            return self.aggregate(node[1], node[2], self.at(node[3], t))
        if kind == "binary":
            return self.binary(node, t)
        raise ValueError(kind)

    def select(self, node, t, window):
        _, name, matchers, _ = node
        out = {}
        for key, samples in self.store.series.items():
            labels = dict(key)
            if labels["__name__"] != name:
                continue
            if any(labels.get(k) != v for k, v in matchers.items()):
                continue
            if window is None:
                recent = [v for at, v in samples if t - 5 * SCRAPE_EVERY < at <= t]
                if recent:
                    out[without_name(key)] = recent[-1]
            else:
                inside = [(at, v) for at, v in samples if t - window < at <= t]
                if len(inside) >= 2:
                    out[without_name(key)] = inside
        return out

    def call(self, name, args, t):
        if name == "vector":
            return {(): args[0][1]}
        if name == "histogram_quantile":
            q = args[0][1]
            groups = {}
            for labels, count in self.at(args[1], t).items():
                rest = tuple((k, v) for k, v in labels if k != "le")
                le = float(dict(labels)["le"])
                groups.setdefault(rest, []).append((le, count))
            return {k: quantile(q, v) for k, v in groups.items()}
        selector = args[0]
        ranges = self.select(selector, t, selector[3])
        out = {}
        for labels, samples in ranges.items():
            grown = increase(samples)
            span = samples[-1][0] - samples[0][0]
            out[labels] = grown / span if name == "rate" else grown
        return out

    @staticmethod
    def aggregate(op, by, vector):
        groups = {}
        for labels, value in vector.items():
            key = tuple((k, v) for k, v in labels if by is not None and k in by)
            groups.setdefault(key, []).append(value)
        reduce = {"sum": sum, "max": max, "min": min, "count": len}[op]
        return {k: float(reduce(v)) for k, v in groups.items()}

    def binary(self, node, t):
        _, op, left_node, right_node, on, group = node
        left, right = self.at(left_node, t), self.at(right_node, t)
        apply = {
            "*": lambda a, b: a * b,
            "/": lambda a, b: a / b if b else math.nan,
            "-": lambda a, b: a - b,
            "+": lambda a, b: a + b,
        }
        if op == "or":
            out = dict(left)
            if not left:
                out.update(right)
            return out
        if isinstance(right, float) and isinstance(left, float):
            return apply[op](left, right)
        if isinstance(right, float):
            if op in ("==", ">"):
                test = (lambda a: a == right) if op == "==" else (lambda a: a > right)
                return {k: v for k, v in left.items() if test(v)}
            return {k: apply[op](v, right) for k, v in left.items()}

        def key(labels):
            if on is None:
                return labels
            return tuple((k, v) for k, v in labels if k in on)

        one, many = (left, right) if group == "group_right" else (right, left)
        index = {key(labels): value for labels, value in one.items()}
        out = {}
        for labels, value in many.items():
            other = index.get(key(labels))
            if other is None:
                continue
            a, b = (other, value) if group == "group_right" else (value, other)
            out[labels] = apply[op](a, b)
        return out


def evaluate(expr, store, t):
    text = (
        expr.replace("$namespace", NAMESPACE)
        .replace("$cluster", CLUSTER)
        .replace("[$__rate_interval]", f"[{int(RATE_INTERVAL)}s]")
    )
    result = Evaluator(store).at(Parser(text).expr(), t)
    return {(): result} if isinstance(result, float) else result


# ---------------------------------------------------------------------------------------
# The cluster and the load


def start_cluster(binary, folder):
    process = subprocess.Popen(
        [binary, "cluster", "--dir", folder, "--shards", "2", "--replicas", "3", "--edges", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    edges, replicas = [], []
    deadline = time.time() + 120
    for line in process.stdout:
        if line.startswith("edge: "):
            edges.append(line.split()[1])
        elif line.startswith("shard "):
            replicas.append((line.split(":")[0], line.split()[-1]))
        elif line.startswith("tokens:"):
            break
        if time.time() > deadline:
            raise RuntimeError("dolphin cluster did not announce itself within 120 s")
    if not edges:
        raise RuntimeError("dolphin cluster exited before announcing its edges")
    return process, edges, replicas


def token(binary, folder, user):
    secret = pathlib.Path(folder, "jwt-secret").read_text().strip()
    env = dict(os.environ, DOLPHIN_JWT_SECRET=secret)
    return subprocess.run(
        [binary, "token", user], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


class Load:
    """Users who send text to direct and group conversations at a steady pace."""

    def __init__(self, edges, tokens, seconds, interval):
        self.edges = edges
        self.tokens = tokens
        self.seconds = seconds
        self.interval = interval
        self.sent = 0
        self.pushed = 0
        self.errors = 0

    async def user(self, websockets, n, user, groups, stop):
        url = f"{self.edges[n % len(self.edges)]}?token={self.tokens[user]}&device=load"
        async with websockets.connect(url, max_size=None) as socket:
            await socket.recv()  # hello

            async def read():
                async for frame in socket:
                    kind = json.loads(frame).get("type")
                    if kind == "msg":
                        self.pushed += 1
                    elif kind == "error":
                        self.errors += 1

            reader = asyncio.create_task(read())
            users = sorted(self.tokens)
            count = 0
            while time.time() < stop:
                count += 1
                if count % 2:
                    peer = random.choice([u for u in users if u != user])
                    conv = "d:" + ":".join(sorted([user, peer]))
                else:
                    conv = groups[n % len(groups)]
                frame = {
                    "type": "send",
                    "rid": f"r{count}",
                    "conv": conv,
                    "cid": f"{user}-{count}",
                    "body": {"kind": "text", "text": f"message {count} from {user}"},
                }
                await socket.send(json.dumps(frame))
                self.sent += 1
                if count % 40 == 0:
                    # A read of a conversation the user is not in: a real `not_member` error.
                    await socket.send(json.dumps(
                        {"type": "fetch", "rid": f"f{count}", "conv": "d:nobody:somebody"}
                    ))
                await asyncio.sleep(self.interval * random.uniform(0.5, 1.5))
            reader.cancel()

    async def create_groups(self, websockets, owners):
        groups = []
        users = sorted(self.tokens)
        for index, owner in enumerate(owners):
            members = [u for i, u in enumerate(users) if i % len(owners) == index and u != owner]
            url = f"{self.edges[0]}?token={self.tokens[owner]}&device=setup"
            async with websockets.connect(url) as socket:
                await socket.recv()
                await socket.send(json.dumps({
                    "type": "group.create", "rid": "g", "title": f"team {index}",
                    "members": members,
                }))
                while True:
                    reply = json.loads(await socket.recv())
                    if reply.get("rid") == "g":
                        groups.append(reply["conv"])
                        break
        return groups

    async def run(self):
        import websockets

        groups = await self.create_groups(websockets, sorted(self.tokens)[:2])
        stop = time.time() + self.seconds
        await asyncio.gather(*(
            self.user(websockets, n, user, groups, stop)
            for n, user in enumerate(sorted(self.tokens))
        ))


async def scrape_while(load_task, targets, store):
    while not load_task.done():
        started = time.time()
        for target, url in targets:
            try:
                text = await asyncio.to_thread(scrape, url)
            except OSError as error:
                print(f"scrape of {url} failed: {error}", file=sys.stderr)
                continue
            store.add(started, target, text)
        store.times.append(started)
        await asyncio.sleep(max(0.0, SCRAPE_EVERY - (time.time() - started)))


# ---------------------------------------------------------------------------------------
# Drawing


UNITS = {"s": ("ms", 1000.0), "reqps": ("/s", 1.0), "short": ("", 1.0), "bytes": ("B", 1.0)}


def legend(template, labels):
    labels = dict(labels)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def draw(board, store, out, caption):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    panels = board["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    figure = plt.figure(figsize=(18, height * 0.42), facecolor="#111217")
    grid = GridSpec(
        height, 24, figure=figure, left=0.04, right=0.99, top=0.98, bottom=0.03,
        hspace=2.4, wspace=1.4,
    )
    times = store.times[1:]
    start = store.times[0]
    for panel in panels:
        box = panel["gridPos"]
        if panel["type"] == "row":
            axis = figure.add_subplot(grid[box["y"], :])
            axis.axis("off")
            axis.text(0, 0.2, panel["title"], color="#d8d9da", fontsize=13, weight="bold")
            continue
        # The last grid line of each panel stays empty: room for the axis labels.
        rows = slice(box["y"], box["y"] + max(box["h"] - 1, 1))
        axis = figure.add_subplot(grid[rows, box["x"]:box["x"] + box["w"]])
        axis.set_facecolor("#181b1f")
        for side in axis.spines.values():
            side.set_color("#2c3235")
        axis.set_title(panel["title"], color="#d8d9da", fontsize=10, loc="left")
        axis.tick_params(colors="#8e8e8e", labelsize=7)
        suffix, scale = UNITS[panel["fieldConfig"]["defaults"]["unit"]]
        if panel["type"] == "stat":
            draw_stat(axis, panel, store, times[-1], suffix, scale)
        else:
            draw_series(axis, panel, store, times, start, suffix, scale)
    figure.text(0.01, 0.003, caption, color="#8e8e8e", fontsize=8)
    figure.savefig(out, dpi=80, facecolor=figure.get_facecolor(), bbox_inches="tight")


def draw_stat(axis, panel, store, t, suffix, scale):
    axis.set_xticks([])
    axis.set_yticks([])
    values = []
    for target in panel["targets"]:
        values.extend(evaluate(target["expr"], store, t).values())
    values = [v for v in values if not math.isnan(v)]
    value = sum(values) * scale if values else math.nan
    number = f"{value:,.0f}" if suffix == "" else f"{value:,.1f}"
    text = "no data" if math.isnan(value) else number + suffix
    color = "#73bf69"
    if panel["title"] == "Shards without a leader" and value > 0:
        color = "#f2495c"
    axis.text(0.5, 0.45, text, ha="center", va="center", fontsize=26, color=color,
              transform=axis.transAxes, weight="bold")


def draw_series(axis, panel, store, times, start, suffix, scale):
    lines = {}
    for target in panel["targets"]:
        for t in times:
            for labels, value in evaluate(target["expr"], store, t).items():
                name = legend(target["legendFormat"], labels)
                lines.setdefault(name, {})[t] = value * scale
    if all(math.isnan(v) for points in lines.values() for v in points.values()):
        axis.text(0.5, 0.5, "no data", ha="center", va="center", color="#8e8e8e",
                  transform=axis.transAxes)
    for name, points in sorted(lines.items()):
        xs = [t - start for t in times]
        ys = [points.get(t, math.nan) for t in times]
        axis.plot(xs, ys, label=name, linewidth=1.4)
    axis.grid(color="#2c3235", linewidth=0.5)
    axis.set_xlabel("seconds into the run", color="#8e8e8e", fontsize=7)
    if suffix:
        axis.set_ylabel(suffix, color="#8e8e8e", fontsize=7)
    axis.set_ylim(bottom=0)
    if lines:
        axis.legend(fontsize=7, loc="upper left", facecolor="#181b1f", edgecolor="#2c3235",
                    labelcolor="#d8d9da", ncol=min(len(lines), 4))


# ---------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target_dir = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    parser.add_argument("--binary", default=os.path.join(target_dir, "debug", "dolphin"))
    parser.add_argument("--out", default=str(ROOT / "docs/images/overview.png"))
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interval", type=float, default=0.25,
                        help="mean seconds between two sends of one user")
    args = parser.parse_args()
    board = json.loads((ROOT / "dashboards/overview.json").read_text())

    with tempfile.TemporaryDirectory(prefix="dolphin-render-") as folder:
        process, edges, replicas = start_cluster(args.binary, folder)
        try:
            users = [f"user{n:02}" for n in range(args.users)]
            tokens = {u: token(args.binary, folder, u) for u in users}
            targets = [
                ({"namespace": NAMESPACE, "cluster": CLUSTER, "pod": f"edge-{n}",
                  "instance": url.split("/")[2]}, url.replace("ws://", "http://")
                 .replace("/v1/ws", "/metrics"))
                for n, url in enumerate(edges)
            ] + [
                ({"namespace": NAMESPACE, "cluster": CLUSTER,
                  "pod": name.replace(" ", "-"), "instance": url.split("/")[2]},
                 url.replace("/admin/status", "/metrics"))
                for name, url in replicas
            ]
            store = Store()
            load = Load(edges, tokens, args.seconds, args.interval)

            async def run():
                task = asyncio.create_task(load.run())
                await scrape_while(task, targets, store)
                await task

            asyncio.run(run())
        finally:
            process.terminate()
            process.wait(timeout=30)

    caption = (
        f"Rendered by e2e/dashboards/render.py from dashboards/overview.json: dolphin cluster "
        f"(2 shards x 3 replicas, 2 edges, Redis) on one machine, {args.users} users, "
        f"{load.sent} sends in {args.seconds:.0f} s, {load.pushed} msg pushes received, "
        f"scraped every {SCRAPE_EVERY:.0f} s; rate window {RATE_INTERVAL:.0f} s. No Grafana."
    )
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    draw(board, store, args.out, caption)
    print(f"{load.sent} sends, {load.pushed} pushes received, {load.errors} error replies; "
          f"{len(store.times)} scrapes; wrote {args.out}")
    for name in ("dolphin_edge_send_accepted_seconds_count", "dolphin_edge_send_push_seconds_count",
                 "dolphin_queue_push_seconds_count", "dolphin_sequencer_commit_seconds_count"):
        total = sum(v for v in evaluate(name, store, store.times[-1]).values())
        print(f"{name}: {total:.0f} (every scraped process, end of the run)")


if __name__ == "__main__":
    main()
