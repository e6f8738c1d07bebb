//! The Grafana dashboards and the alert rules in dashboards/ are well formed, and every metric
//! they query is one a running cluster really exports, with the labels they select on.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

#[path = "support/observed.rs"]
mod observed;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Labels Prometheus attaches to every target it scrapes (`cluster` by the PodMonitor's
/// relabeling), and `le`, which histograms' `_bucket` series carry.
const TARGET_LABELS: [&str; 6] = ["namespace", "cluster", "pod", "instance", "job", "le"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every dashboard, by file name.
fn dashboards() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let board = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
            out.insert(name, board);
        }
    }
    assert!(out.len() >= 5, "dashboards/ holds only {:?}", out.keys());
    out
}

fn alerts() -> Value {
    let text = std::fs::read_to_string(repo().join("dashboards/alerts.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("alerts.yaml is not YAML: {e}"))
}

/// The panels of a dashboard that query data (rows only group them).
fn data_panels(board: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in board["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            out.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            out.push(panel);
        }
    }
    out
}

/// Every rule of the PrometheusRule.
fn rules(alerts: &Value) -> Vec<&Value> {
    let groups = alerts["spec"]["groups"].as_array().expect("spec.groups is a list");
    groups.iter().flat_map(|g| g["rules"].as_array().expect("a group has rules")).collect()
}

/// Every query: (where it is, the PromQL).
fn queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, board) in dashboards() {
        for panel in data_panels(&board) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default().to_owned();
                out.push((format!("{name}: {}", panel["title"]), expr));
            }
        }
    }
    for rule in rules(&alerts()) {
        let expr = rule["expr"].as_str().unwrap_or_default().to_owned();
        out.push((format!("alerts.yaml: {}", rule["alert"]), expr));
    }
    out
}

/// A metric named in a query, with its label matchers: (label, operator, value).
#[derive(Debug)]
struct Selector {
    name: String,
    matchers: Vec<(String, String, String)>,
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier starting at `at`, and where it ends.
fn ident_at(expr: &str, at: usize) -> (&str, usize) {
    let end = expr[at..].find(|c| !is_ident(c)).map_or(expr.len(), |n| at + n);
    (&expr[at..end], end)
}

/// Every `dolphin_...` metric a query names, with the matchers in the braces after it.
fn selectors(expr: &str) -> Vec<Selector> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = expr[from..].find("dolphin_") {
        let at = from + found;
        let (name, end) = ident_at(expr, at);
        from = end;
        if expr[..at].ends_with(is_ident) {
            continue;
        }
        let rest = expr[end..].trim_start();
        let matchers = match rest.strip_prefix('{') {
            Some(inner) => matchers(&inner[..inner.find('}').expect("a closing brace")]),
            None => Vec::new(),
        };
        out.push(Selector { name: name.to_owned(), matchers });
    }
    out
}

/// `a="x", b=~"y"` as (label, operator, value) triples.
fn matchers(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (label, end) = ident_at(rest, 0);
        let after = rest[end..].trim_start();
        let op_len = after.find('"').expect("a quoted matcher value");
        let op = after[..op_len].trim();
        let value_and_rest = &after[op_len + 1..];
        let close = value_and_rest.find('"').expect("a closing quote");
        out.push((label.to_owned(), op.to_owned(), value_and_rest[..close].to_owned()));
        rest = value_and_rest[close + 1..].trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// The labels of every `by (...)`, `without (...)`, `on (...)` and `ignoring (...)` clause.
fn grouping_labels(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for keyword in ["by", "without", "on", "ignoring", "group_left", "group_right"] {
        let mut from = 0;
        while let Some(found) = expr[from..].find(keyword) {
            let at = from + found;
            from = at + keyword.len();
            let whole_word = !expr[..at].ends_with(is_ident) && !expr[from..].starts_with(is_ident);
            let Some(list) = expr[from..].trim_start().strip_prefix('(') else { continue };
            if whole_word {
                let list = &list[..list.find(')').expect("a closing parenthesis")];
                out.extend(
                    list.split(',').map(str::trim).filter(|l| !l.is_empty()).map(Into::into),
                );
            }
        }
    }
    out
}

/// A metric's family: the name without the suffix of a histogram's series.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name)
}

/// What a scrape of every process exports: the type of each family, and the label sets of
/// each series name.
#[derive(Debug, Default)]
struct Exported {
    types: BTreeMap<String, String>,
    series: BTreeMap<String, Vec<BTreeMap<String, String>>>,
}

impl Exported {
    fn add(&mut self, text: &str) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                self.types.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') && !line.is_empty() {
                let (name, labels) = series_of(line);
                self.series.entry(name).or_default().push(labels);
            }
        }
    }

    /// What is wrong with one selector of a query: a missing family, a histogram suffix on a
    /// metric that is no histogram, or a label (or label value) no series has.
    fn problems(&self, selector: &Selector) -> Vec<String> {
        let name = &selector.name;
        let Some(kind) = self.types.get(family(name)) else {
            return vec![format!("{name} is not exported")];
        };
        if family(name) != name && kind != "histogram" {
            return vec![format!("{name}: {} is a {kind}, not a histogram", family(name))];
        }
        let series = self.series.get(name).map(Vec::as_slice).unwrap_or_default();
        let mut out = Vec::new();
        for (label, op, value) in &selector.matchers {
            if TARGET_LABELS.contains(&label.as_str()) && label != "le" {
                continue;
            }
            if !series.iter().any(|s| s.contains_key(label)) {
                out.push(format!("{name} has no label {label}"));
            } else if op == "=" && !series.iter().any(|s| s.get(label) == Some(value)) {
                out.push(format!("{name} has no series with {label}=\"{value}\""));
            }
        }
        out
    }

    /// The labels any series of the metric carries.
    fn labels(&self, name: &str) -> BTreeSet<String> {
        let series = self.series.get(name).map(Vec::as_slice).unwrap_or_default();
        series.iter().flat_map(|s| s.keys().cloned()).collect()
    }
}

/// The name and labels of one sample line, `name{a="x",b="y"} value`.
fn series_of(line: &str) -> (String, BTreeMap<String, String>) {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    if line[name_end..].starts_with('{') {
        let inner = &line[name_end + 1..line.rfind('}').unwrap()];
        for (label, _, value) in matchers(inner) {
            labels.insert(label, value);
        }
    }
    (name, labels)
}

/// What is wrong with one query against what the cluster exports.
fn query_problems(expr: &str, exported: &Exported) -> Vec<String> {
    let selectors = selectors(expr);
    let mut out = Vec::new();
    let mut labels: BTreeSet<String> = TARGET_LABELS.iter().map(|l| (*l).to_owned()).collect();
    for selector in selectors.iter().filter(|s| !s.name.starts_with("dolphin_operator_")) {
        out.extend(exported.problems(selector));
        labels.extend(exported.labels(&selector.name));
    }
    if selectors.iter().all(|s| !s.name.starts_with("dolphin_operator_")) {
        for label in grouping_labels(expr).difference(&labels) {
            out.push(format!("groups by {label}, which none of its metrics carries"));
        }
    }
    out
}

/// (name, labels cell) of every row of docs/metrics.md for `component`.
fn documented(component: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 6 && cells[4] == component {
            out.insert(cells[1].trim_matches('`').to_owned(), cells[3].to_owned());
        }
    }
    out
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn the_query_reader_finds_metrics_matchers_and_groupings() {
    let expr = concat!(
        r#"max by (shard) (x_dolphin_fake + dolphin_a_total{cluster="$cluster", role="leader"})"#,
        " * on (instance) group_left rate(dolphin_b_seconds_bucket[5m])",
    );
    let found = selectors(expr);
    let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["dolphin_a_total", "dolphin_b_seconds_bucket"]);
    assert_eq!(found[0].matchers[1], ("role".into(), "=".into(), "leader".into()));
    assert_eq!(family(&found[1].name), "dolphin_b_seconds");
    let groups: Vec<String> = grouping_labels(expr).into_iter().collect();
    assert_eq!(groups, ["instance", "shard"]);
}

#[test]
fn every_dashboard_is_grafana_json_with_a_unique_uid() {
    let mut uids = BTreeSet::new();
    for (name, board) in dashboards() {
        let uid = board["uid"].as_str().unwrap_or_else(|| panic!("{name} has no uid"));
        assert!(uids.insert(uid.to_owned()), "{name}: uid {uid} is used twice");
        assert!(board["title"].is_string(), "{name} has no title");
        assert!(board["schemaVersion"].as_u64().unwrap_or(0) >= 36, "{name}: old schema");

        let variables: Vec<&str> = board["templating"]["list"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no variables"))
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert!(variables.contains(&"datasource"), "{name} has no datasource variable");
        assert!(variables.contains(&"namespace"), "{name} has no namespace variable");
        let per_cluster = name != "operator.json";
        if per_cluster {
            assert!(variables.contains(&"cluster"), "{name} has no cluster variable");
        }

        let panels = data_panels(&board);
        assert!(!panels.is_empty(), "{name} has no panels");
        for panel in panels {
            let title = &panel["title"];
            assert!(panel["datasource"]["uid"].is_string(), "{name}: {title} has no datasource");
            assert!(panel["gridPos"]["w"].is_u64(), "{name}: {title} has no position");
            let targets = panel["targets"].as_array();
            assert!(targets.is_some_and(|t| !t.is_empty()), "{name}: {title} has no targets");
            for target in targets.into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                let found = selectors(expr);
                assert!(!found.is_empty(), "{name}: {title} queries no Dolphin metric: {expr}");
                for selector in found {
                    let has = |label: &str, value: &str| {
                        selector
                            .matchers
                            .iter()
                            .any(|(l, o, v)| l == label && o == "=" && v == value)
                    };
                    assert!(
                        has("namespace", "$namespace")
                            && (!per_cluster || has("cluster", "$cluster")),
                        "{name}: {title}: {} is not filtered by the variables",
                        selector.name
                    );
                }
            }
        }
    }
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_runbook_that_exists() {
    let alerts = alerts();
    assert_eq!(alerts["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(alerts["kind"], "PrometheusRule");
    let operations = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();

    let mut names = BTreeSet::new();
    for rule in rules(&alerts) {
        let name = rule["alert"].as_str().expect("every rule is an alert");
        names.insert(name.to_owned());
        assert!(rule["expr"].as_str().is_some_and(|e| !e.trim().is_empty()), "{name}: no expr");
        let severity = rule["labels"]["severity"].as_str();
        assert!(matches!(severity, Some("critical" | "warning")), "{name}: severity {severity:?}");
        for annotation in ["summary", "description"] {
            assert!(rule["annotations"][annotation].is_string(), "{name}: no {annotation}");
        }
        let runbook = rule["annotations"]["runbook_url"].as_str().expect("a runbook_url");
        let (page, fragment) = runbook.split_once('#').expect("the runbook_url has an anchor");
        assert!(page.ends_with("docs/operations.md"), "{name}: runbook on {page}");
        assert!(anchors.contains(fragment), "{name}: docs/operations.md has no #{fragment}");
    }
    let expected = [
        "DolphinShardWithoutLeader",
        "DolphinLeaderFlapping",
        "DolphinQueueLagGrowing",
        "DolphinPushLatencySLOBurn",
        "DolphinEdgeSaturated",
    ];
    for name in expected {
        assert!(names.contains(name), "alerts.yaml has no {name}");
    }
}

#[test]
fn every_operator_metric_queried_is_documented_with_its_labels() {
    let documented = documented("operator");
    assert!(!documented.is_empty(), "docs/metrics.md lists no operator metric");
    let mut queried = 0;
    for (place, expr) in queries() {
        for selector in selectors(&expr) {
            if !selector.name.starts_with("dolphin_operator_") {
                continue;
            }
            queried += 1;
            let labels = documented.get(family(&selector.name));
            assert!(labels.is_some(), "{place}: {} is not in docs/metrics.md", selector.name);
            for label in grouping_labels(&expr) {
                let target_label = TARGET_LABELS.contains(&label.as_str());
                assert!(
                    target_label || labels.unwrap().contains(&format!("`{label}`")),
                    "{place}: {} has no documented label {label}",
                    selector.name
                );
            }
        }
    }
    assert!(queried > 0, "no dashboard queries the operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_queried_by_a_dashboard_or_an_alert_is_exported_by_a_cluster() {
    let queries = queries();
    let queried: BTreeSet<String> =
        queries.iter().flat_map(|(_, e)| selectors(e)).map(|s| s.name).collect();
    for needed in ["dolphin_edge_send_push_seconds_bucket", "dolphin_sequencer_role"] {
        assert!(queried.contains(needed), "no query names {needed}: the reader is broken");
    }

    let dir = tempfile::tempdir().unwrap();
    let (cluster, alice, _events) = observed::cluster_after_traffic(dir.path()).await;
    let edge = cluster.edge_addrs()[0].clone();

    // The queue gauges are sampled by each leader every few seconds, and the rejected push
    // comes after its accepted reply: scrape until every query finds what it needs.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut exported = Exported::default();
        exported.add(&observed::scrape(&edge).await);
        for shard in 0..2 {
            for replica in 1..=3 {
                exported
                    .add(&observed::scrape(&cluster.replica_addr(shard, replica).unwrap()).await);
            }
        }
        let problems: Vec<String> = queries
            .iter()
            .flat_map(|(place, expr)| {
                query_problems(expr, &exported).into_iter().map(move |p| format!("{place}: {p}"))
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queries the cluster cannot answer:\n{}",
            problems.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    alice.close().await;
}
