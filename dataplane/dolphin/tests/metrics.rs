//! Every metric docs/metrics.md lists for the edge and the sequencer is exported, with the
//! documented type, by a cluster of processes after some traffic.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

#[path = "support/observed.rs"]
mod observed;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// (name, type) of every documented metric of `component`, from the tables of docs/metrics.md.
fn documented(component: &str) -> BTreeSet<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "", name, type, labels, component, meaning, ""
        if cells.len() >= 6 && cells[4] == component {
            out.insert((cells[1].trim_matches('`').to_owned(), cells[2].to_owned()));
        }
    }
    assert!(!out.is_empty(), "docs/metrics.md lists no {component} metric");
    out
}

/// (name, type) of every metric family in a scrape.
fn exported(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

/// The `_count` of histogram `name`, summed over its series.
fn observations(text: &str, name: &str) -> u64 {
    let prefix = format!("{name}_count");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The documented metrics missing from, or typed differently in, `scraped`.
fn missing(
    documented: &BTreeSet<(String, String)>,
    scraped: &BTreeMap<String, String>,
) -> Vec<String> {
    documented
        .iter()
        .filter(|(name, kind)| scraped.get(name) != Some(kind))
        .map(|(name, kind)| format!("{name} ({kind}; exported as {:?})", scraped.get(name)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_is_exported_after_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, alice, _events) = observed::cluster_after_traffic(dir.path()).await;
    let edge = cluster.edge_addrs()[0].clone();

    let edge_docs = documented("edge");
    let sequencer_docs = documented("sequencer");
    // The queue gauges are sampled by each leader every few seconds: scrape until they show.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let edge_text = observed::scrape(&edge).await;
        let mut edge_missing = missing(&edge_docs, &exported(&edge_text));
        // Every edge histogram measures something this traffic does: each must have counted.
        for (name, _) in edge_docs.iter().filter(|(_, kind)| kind == "histogram") {
            if observations(&edge_text, name) == 0 {
                edge_missing.push(format!("{name} (no observation)"));
            }
        }
        let mut replicas = BTreeMap::new();
        for shard in 0..2 {
            for replica in 1..=3 {
                let addr = cluster.replica_addr(shard, replica).unwrap();
                replicas.extend(exported(&observed::scrape(&addr).await));
            }
        }
        let sequencer_missing = missing(&sequencer_docs, &replicas);
        if edge_missing.is_empty() && sequencer_missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not exported as documented: edge {edge_missing:?}, sequencer {sequencer_missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    alice.close().await;
}
