#!/usr/bin/env python3
"""Writes the Grafana dashboards in dashboards/*.json from the panel lists below.

The JSON files are committed; run this again after changing a panel and commit both:

    python3 e2e/dashboards/generate.py

Every query names only metrics of docs/metrics.md, with their real labels;
`cargo test -p dolphin --test dashboards` checks that against a running cluster.
"""

import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "dashboards"

# Prometheus adds `namespace` to every target of the operator's PodMonitor; `cluster` is the
# ImCluster's name (see docs/dashboards.md for the relabeling that sets it).
SEL = 'namespace="$namespace", cluster="$cluster"'
# The operator runs once per installation and has no `cluster` dimension.
OP_SEL = 'namespace="$namespace"'
RATE = "$__rate_interval"
SEND = 'type="send"'
MSG = 'type="msg"'
REJECTED = 'type="rejected"'
LEADER = 'role="leader"'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


# The states of dolphin_edge_connections.
OPEN = 'state="open"'
CLOSING = 'state="closing"'


def sel(extra=""):
    return "{" + SEL + (", " + extra if extra else "") + "}"


def rate(metric, extra="", window=RATE):
    return f"rate({metric}{sel(extra)}[{window}])"


def quantile(q, histogram, by=""):
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) ({rate(histogram + '_bucket')}))"


def leader_gauge(metric):
    """A per-shard gauge sampled by the shard's leader: a replica that stopped leading keeps
    its last sample, so each replica's value is weighted by whether it leads now."""
    return (
        f"max by (shard) ({metric}{sel()} * on (instance, shard) group_left"
        f" max by (instance, shard) (dolphin_sequencer_role{sel(LEADER)}))"
    )


def target(expr, legend):
    return {"expr": expr, "legendFormat": legend}


def panel(title, unit, targets, description, kind="timeseries", stack=False):
    return {
        "title": title,
        "type": kind,
        "unit": unit,
        "targets": targets,
        "description": description,
        "stack": stack,
    }


OVERVIEW = [
    ("Golden signals at a glance", [
        panel("Sends per second", "reqps", [
            target(f"sum({rate('dolphin_edge_frames_in_total', SEND)})", "sends"),
        ], "send frames received by every edge", kind="stat"),
        panel("Send to push p99", "s", [
            target(quantile(0.99, "dolphin_edge_send_push_seconds"), "p99"),
        ], "99th percentile from a send to the push of its msg to the sender", kind="stat"),
        panel("Open connections", "short", [
            target(f"sum(dolphin_edge_connections{sel(OPEN)})", "connections"),
        ], "WebSocket connections open on every edge", kind="stat"),
        panel("Shards without a leader", "short", [
            target(
                f"count(max by (shard) (dolphin_sequencer_role{sel(LEADER)}) == 0)"
                " or vector(0)",
                "shards",
            ),
        ], "shards none of whose replicas reports itself leader", kind="stat"),
    ]),
    ("Traffic", [
        panel("Messages per second", "reqps", [
            target(f"sum({rate('dolphin_edge_frames_in_total', SEND)})", "sent"),
            target(
                f"sum({rate('dolphin_sequencer_messages_ordered_total')}"
                " * on (instance) group_left"
                f" max by (instance) (dolphin_sequencer_role{sel(LEADER)}))",
                "ordered (leaders)",
            ),
        ], "sends taken by the edges, and messages given a seq (counted once, by leaders)"),
        panel("Deliveries per second", "reqps", [
            target(f"sum({rate('dolphin_edge_frames_out_total', MSG)})", "msg pushes"),
            target(
                f"sum({rate('dolphin_edge_frames_out_total', REJECTED)})",
                "rejected notices",
            ),
        ], "message frames pushed to devices by every edge"),
    ]),
    ("Latency", [
        panel("Send to accepted", "s", [
            target(quantile(0.5, "dolphin_edge_send_accepted_seconds"), "p50"),
            target(quantile(0.99, "dolphin_edge_send_accepted_seconds"), "p99"),
        ], "from a send frame to its accepted reply: the queue holds the message"),
        panel("Send to push", "s", [
            target(quantile(0.5, "dolphin_edge_send_push_seconds"), "p50"),
            target(quantile(0.99, "dolphin_edge_send_push_seconds"), "p99"),
        ], "from a send frame to the push of the ordered msg to the sending device"),
    ]),
    ("Errors", [
        panel("Error replies by code", "reqps", [
            target(f"sum by (code) ({rate('dolphin_edge_error_replies_total')})", "{{code}}"),
        ], "error frames the edges answered, by protocol code", stack=True),
        panel("Queue push failures by reason", "reqps", [
            target(
                f"sum by (reason) ({rate('dolphin_queue_push_failures_total')})", "{{reason}}"
            ),
        ], "sends the queue did not take: unavailable, error, no_quorum", stack=True),
    ]),
    ("Saturation", [
        panel("Open connections", "short", [
            target(f"sum by (pod) (dolphin_edge_connections{sel(OPEN)})", "{{pod}}"),
        ], "WebSocket connections open, per edge pod", stack=True),
        panel("Push overflow disconnects", "short", [
            target(
                f"sum(increase(dolphin_edge_push_overflow_disconnects_total{sel()}[{RATE}]))",
                "disconnects",
            ),
        ], "devices disconnected because their push queue of 1,024 frames filled"),
        panel("Queue consumer lag", "short", [
            target(
                leader_gauge("dolphin_queue_consumer_lag_entries"), "shard {{shard}}"
            ),
        ], "inbox entries not yet read by the shard's leader (sampled every 5 s)"),
        panel("Raft commit latency", "s", [
            target(quantile(0.5, "dolphin_sequencer_commit_seconds"), "p50"),
            target(quantile(0.99, "dolphin_sequencer_commit_seconds"), "p99"),
        ], "from proposing a batch to its applied result, on every leader"),
    ]),
]

SEQUENCER = [
    ("Leadership", [
        panel("Leader replica per shard", "short", [
            target(
                f"max by (shard, replica) (dolphin_sequencer_role{sel(LEADER)}) == 1",
                "shard {{shard}}: replica {{replica}}",
            ),
        ], "the replica that reports itself leader of each shard", kind="stat"),
        panel("Shards without a leader", "short", [
            target(
                f"count(max by (shard) (dolphin_sequencer_role{sel(LEADER)}) == 0)"
                " or vector(0)",
                "shards",
            ),
        ], "shards none of whose replicas reports itself leader", kind="stat"),
        panel("Replicas by role", "short", [
            target(f"sum by (role) (dolphin_sequencer_role{sel()})", "{{role}}"),
        ], "how many replicas hold each Raft role", stack=True),
        panel("Term", "short", [
            target(f"max by (shard) (dolphin_sequencer_term{sel()})", "shard {{shard}}"),
        ], "the highest Raft term a replica of the shard reports"),
        panel("Leader changes", "short", [
            target(
                f"max by (shard) (increase(dolphin_sequencer_leader_changes_total{sel()}[15m]))",
                "shard {{shard}}",
            ),
        ], "changes of leader over 15 minutes, as the replica that saw most of them counts"),
    ]),
    ("Log", [
        panel("Applied vs last log index", "short", [
            target(
                f"max by (shard, replica) (dolphin_sequencer_last_log_index{sel()})",
                "last {{shard}}/{{replica}}",
            ),
            target(
                f"max by (shard, replica) (dolphin_sequencer_applied_index{sel()})",
                "applied {{shard}}/{{replica}}",
            ),
        ], "per replica: the last index in its log and the last it applied"),
        panel("Replica apply backlog", "short", [
            target(
                f"max by (shard) (dolphin_sequencer_last_log_index{sel()})"
                f" - on (shard) group_right min by (shard, replica)"
                f" (dolphin_sequencer_applied_index{sel()})",
                "{{shard}}/{{replica}}",
            ),
        ], "entries each replica has yet to apply, behind the longest log of its shard"),
        panel("Commit latency", "s", [
            target(quantile(0.5, "dolphin_sequencer_commit_seconds"), "p50"),
            target(quantile(0.99, "dolphin_sequencer_commit_seconds"), "p99"),
        ], "from proposing a batch to its applied result"),
        panel("Apply latency", "s", [
            target(quantile(0.5, "dolphin_sequencer_apply_seconds"), "p50"),
            target(quantile(0.99, "dolphin_sequencer_apply_seconds"), "p99"),
        ], "time to apply a batch of entries to the state, fsync included"),
        panel("Commands per batch", "short", [
            target(quantile(0.5, "dolphin_sequencer_batch_commands"), "p50"),
            target(quantile(0.99, "dolphin_sequencer_batch_commands"), "p99"),
            target(
                f"sum(rate(dolphin_sequencer_batch_commands_sum{sel()}[{RATE}]))"
                f" / sum(rate(dolphin_sequencer_batch_commands_count{sel()}[{RATE}]))",
                "mean",
            ),
        ], "commands per proposed log entry: higher means more batching"),
        panel("Proposals by command", "reqps", [
            target(f"sum by (op) ({rate('dolphin_sequencer_proposals_total')})", "{{op}}"),
        ], "commands proposed to Raft, by kind", stack=True),
    ]),
    ("State machine", [
        panel("Messages ordered per second", "reqps", [
            target(
                f"sum({rate('dolphin_sequencer_messages_ordered_total')}"
                " * on (instance) group_left"
                f" max by (instance) (dolphin_sequencer_role{sel(LEADER)}))",
                "ordered",
            ),
        ], "messages given a seq, counted by the leaders only"),
        panel("Rejects by code", "reqps", [
            target(
                f"sum by (code) ({rate('dolphin_sequencer_rejects_total')}"
                " * on (instance) group_left"
                f" max by (instance) (dolphin_sequencer_role{sel(LEADER)}))",
                "{{code}}",
            ),
        ], "commands refused by the state machine, counted by the leaders only", stack=True),
        panel("Snapshot size", "bytes", [
            target(quantile(0.5, "dolphin_sequencer_snapshot_bytes"), "p50"),
            target(
                f"max(rate(dolphin_sequencer_snapshot_bytes_sum{sel()}[1h])"
                f" / rate(dolphin_sequencer_snapshot_bytes_count{sel()}[1h]))",
                "mean over 1h (largest replica)",
            ),
        ], "size of the snapshots built or installed"),
        panel("Snapshots per hour", "short", [
            target(
                f"sum by (pod) (increase(dolphin_sequencer_snapshot_bytes_count{sel()}[1h]))",
                "{{pod}}",
            ),
        ], "snapshots built or installed per replica pod"),
    ]),
]

EDGE = [
    ("Connections", [
        panel("Open connections per edge", "short", [
            target(f"sum by (pod) (dolphin_edge_connections{sel(OPEN)})", "{{pod}}"),
        ], "WebSocket connections open now", stack=True),
        panel("Connections closing", "short", [
            target(f"sum by (pod) (dolphin_edge_connections{sel(CLOSING)})", "{{pod}}"),
        ], "connections whose close frame is on its way (slow clients hold it)"),
        panel("Connections opened per second", "reqps", [
            target(f"sum by (pod) ({rate('dolphin_edge_connections_opened_total')})", "{{pod}}"),
        ], "new WebSocket connections"),
        panel("Upgrades refused", "reqps", [
            target(
                f"sum by (reason) ({rate('dolphin_edge_upgrades_refused_total')})", "{{reason}}"
            ),
        ], "upgrade requests refused before a connection existed", stack=True),
    ]),
    ("Frames", [
        panel("Frames in by type", "reqps", [
            target(f"sum by (type) ({rate('dolphin_edge_frames_in_total')})", "{{type}}"),
        ], "client frames received; invalid counts undecodable ones", stack=True),
        panel("Frames out by type", "reqps", [
            target(f"sum by (type) ({rate('dolphin_edge_frames_out_total')})", "{{type}}"),
        ], "frames sent to clients: replies and pushes", stack=True),
        panel("Push fan-out", "short", [
            target(quantile(0.5, "dolphin_edge_push_fanout_connections"), "p50"),
            target(quantile(0.99, "dolphin_edge_push_fanout_connections"), "p99"),
        ], "connections one pushed frame was queued for, on one edge"),
        panel("Latency", "s", [
            target(quantile(0.99, "dolphin_edge_send_accepted_seconds"), "send to accepted p99"),
            target(quantile(0.99, "dolphin_edge_send_push_seconds"), "send to push p99"),
        ], "the latencies users feel, 99th percentile"),
    ]),
    ("Trouble", [
        panel("Error replies by code", "reqps", [
            target(f"sum by (code) ({rate('dolphin_edge_error_replies_total')})", "{{code}}"),
        ], "error frames sent, by protocol code", stack=True),
        panel("Push overflow disconnects", "short", [
            target(
                f"sum by (pod) (increase(dolphin_edge_push_overflow_disconnects_total{sel()}"
                f"[{RATE}]))",
                "{{pod}}",
            ),
        ], "slow devices disconnected because their push queue filled"),
        panel("Event gaps", "short", [
            target(
                f"sum by (pod) (increase(dolphin_edge_event_gaps_total{sel()}[{RATE}]))",
                "{{pod}}",
            ),
        ], "times an edge lost events of a shard and made its devices resync"),
    ]),
]

QUEUE = [
    ("Edges writing to the queue", [
        panel("Push latency", "s", [
            target(quantile(0.5, "dolphin_queue_push_seconds"), "p50"),
            target(quantile(0.99, "dolphin_queue_push_seconds"), "p99"),
            target(quantile(0.999, "dolphin_queue_push_seconds"), "p99.9"),
        ], "time for the queue to take one send (XADD, with WAIT if set)"),
        panel("Pushes per second", "reqps", [
            target(f"sum(rate(dolphin_queue_push_seconds_count{sel()}[{RATE}]))", "pushes"),
        ], "sends the queue took"),
        panel("Push failures by reason", "reqps", [
            target(
                f"sum by (reason) ({rate('dolphin_queue_push_failures_total')})", "{{reason}}"
            ),
        ], "sends not queued: queue unavailable or failing, or shard without quorum",
            stack=True),
    ]),
    ("Leaders reading the inboxes", [
        panel("Pending entries", "short", [
            target(leader_gauge("dolphin_queue_pending_entries"), "shard {{shard}}"),
        ], "delivered to the leader and not yet acknowledged (sampled every 5 s)"),
        panel("Consumer lag", "short", [
            target(
                leader_gauge("dolphin_queue_consumer_lag_entries"), "shard {{shard}}"
            ),
        ], "inbox entries not yet delivered to the leader (sampled every 5 s)"),
        panel("Redeliveries", "short", [
            target(
                f"sum by (shard) (increase(dolphin_queue_redeliveries_total{sel()}[{RATE}]))",
                "shard {{shard}}",
            ),
        ], "inbox entries a new leader took over from the previous one"),
    ]),
]

OPERATOR = [
    ("Reconciles", [
        panel("Reconciles by result", "reqps", [
            target(
                f"sum by (result) (rate(dolphin_operator_reconciles_total{{{OP_SEL}}}[{RATE}]))",
                "{{result}}",
            ),
        ], "reconciles run, ok or error", stack=True),
        panel("Reconcile duration", "s", [
            target(
                "histogram_quantile(0.5, sum by (le) (rate("
                f"dolphin_operator_reconcile_seconds_bucket{{{OP_SEL}}}[{RATE}])))",
                "p50",
            ),
            target(
                "histogram_quantile(0.99, sum by (le) (rate("
                f"dolphin_operator_reconcile_seconds_bucket{{{OP_SEL}}}[{RATE}])))",
                "p99",
            ),
        ], "duration of one reconcile"),
        panel("Failures by reason", "reqps", [
            target(
                f"sum by (reason) (rate(dolphin_operator_failures_total{{{OP_SEL}}}[{RATE}]))",
                "{{reason}}",
            ),
        ], "failed reconciles, by reason", stack=True),
        panel("Writes by kind", "reqps", [
            target(
                f"sum by (kind) (rate(dolphin_operator_writes_total{{{OP_SEL}}}[{RATE}]))",
                "{{kind}}",
            ),
        ], "objects the operator changed, by kind", stack=True),
        panel("Clusters by condition", "short", [
            target(
                "max by (condition, status) "
                f"(dolphin_operator_clusters{{{OP_SEL}}})",
                "{{condition}} {{status}}",
            ),
        ], "managed ImClusters by the status of each condition (max over operator replicas: "
           "each counts every cluster)"),
    ]),
]


def variable_query(metric, label, selector):
    return {
        "type": "query",
        "name": label,
        "label": label,
        "datasource": DATASOURCE,
        "query": f"label_values({metric}{selector}, {label})",
        "definition": f"label_values({metric}{selector}, {label})",
        "refresh": 2,
        "sort": 1,
        "includeAll": False,
        "multi": False,
    }


def templating(metric, with_cluster):
    variables = [{
        "type": "datasource",
        "name": "datasource",
        "label": "Prometheus",
        "query": "prometheus",
        "refresh": 1,
    }, variable_query(metric, "namespace", "")]
    if with_cluster:
        variables.append(variable_query(metric, "cluster", '{namespace="$namespace"}'))
    return {"list": variables}


def grafana_panel(spec, panel_id, x, y, w, h):
    refs = "ABCDEFGH"
    out = {
        "id": panel_id,
        "type": spec["type"],
        "title": spec["title"],
        "description": spec["description"],
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {
                "datasource": DATASOURCE,
                "refId": refs[i],
                "expr": t["expr"],
                "legendFormat": t["legendFormat"],
                "range": spec["type"] == "timeseries",
                "instant": spec["type"] == "stat",
            }
            for i, t in enumerate(spec["targets"])
        ],
        "fieldConfig": {"defaults": {"unit": spec["unit"]}, "overrides": []},
        "options": {},
    }
    if spec["type"] == "timeseries":
        out["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if spec["stack"] else 0,
            "stacking": {"mode": "normal" if spec["stack"] else "none", "group": "A"},
        }
        out["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        out["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    return out


def dashboard(uid, title, description, rows, variable_metric, with_cluster=True):
    panels = []
    panel_id = 1
    y = 0
    for row_title, specs in rows:
        panels.append({
            "id": panel_id,
            "type": "row",
            "title": row_title,
            "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            "panels": [],
        })
        panel_id += 1
        y += 1
        stats = all(s["type"] == "stat" for s in specs)
        per_line = 4 if stats else 3 if len(specs) % 3 == 0 else 2
        width = 24 // per_line
        height = 4 if stats else 8
        for i, spec in enumerate(specs):
            x = (i % per_line) * width
            if i and i % per_line == 0:
                y += height
            panels.append(grafana_panel(spec, panel_id, x, y, width, height))
            panel_id += 1
        y += height
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["dolphin"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "graphTooltip": 1,
        "templating": templating(variable_metric, with_cluster),
        "annotations": {"list": []},
        "links": [{
            "type": "dashboards",
            "tags": ["dolphin"],
            "asDropdown": True,
            "title": "Dolphin",
            "includeVars": True,
            "keepTime": True,
        }],
        "panels": panels,
    }


DASHBOARDS = {
    "overview": dashboard(
        "dolphin-overview", "Dolphin / Overview",
        "The four golden signals of messaging: traffic, latency, errors, saturation.",
        OVERVIEW, "dolphin_edge_connections",
    ),
    "sequencer": dashboard(
        "dolphin-sequencer", "Dolphin / Sequencer and Raft",
        "Leaders, terms, log progress, commit and apply latency, batching, snapshots, rejects.",
        SEQUENCER, "dolphin_sequencer_role",
    ),
    "edge": dashboard(
        "dolphin-edge", "Dolphin / Edge",
        "WebSocket connections, frames in and out, fan-out, errors, overflows, event gaps.",
        EDGE, "dolphin_edge_connections",
    ),
    "queue": dashboard(
        "dolphin-queue", "Dolphin / Queue",
        "Inbox writes by the edges, and reads by the shard leaders: latency, lag, pending.",
        QUEUE, "dolphin_queue_push_seconds_count",
    ),
    "operator": dashboard(
        "dolphin-operator", "Dolphin / Operator",
        "Reconciles of ImCluster objects: results, duration, failures, writes.",
        OPERATOR, "dolphin_operator_reconciles_total", with_cluster=False,
    ),
}


def main():
    OUT.mkdir(exist_ok=True)
    for name, board in DASHBOARDS.items():
        text = json.dumps(board, indent=2, ensure_ascii=False) + "\n"
        (OUT / f"{name}.json").write_text(text)
        print(f"wrote dashboards/{name}.json")


if __name__ == "__main__":
    main()
