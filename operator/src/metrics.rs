//! The operator's Prometheus metrics.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::crd::ImClusterStatus;

/// The conditions counted by `dolphin_operator_clusters`, and their statuses.
const CONDITIONS: [&str; 3] = ["Ready", "Progressing", "Degraded"];
const STATUSES: [&str; 3] = ["True", "False", "Unknown"];

/// Counters and timings of reconciles. Labels are bounded: outcomes, error reasons, kinds.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub registry: Registry,
    /// Reconciles by `result` (`ok` or `error`).
    pub reconciles_total: IntCounterVec,
    /// Failed reconciles by `reason`.
    pub failures_total: IntCounterVec,
    pub reconcile_seconds: Histogram,
    /// Objects written (created or applied) by `kind`.
    pub writes_total: IntCounterVec,
    /// Managed ImClusters by `condition` and its `status` (a cluster without the condition
    /// yet counts as `Unknown`).
    pub clusters: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles_total = IntCounterVec::new(
            Opts::new("dolphin_operator_reconciles_total", "Reconciles, by result"),
            &["result"],
        )?;
        let failures_total = IntCounterVec::new(
            Opts::new("dolphin_operator_failures_total", "Failed reconciles, by reason"),
            &["reason"],
        )?;
        let reconcile_seconds = Histogram::with_opts(HistogramOpts::new(
            "dolphin_operator_reconcile_seconds",
            "Time one reconcile took",
        ))?;
        let writes_total = IntCounterVec::new(
            Opts::new("dolphin_operator_writes_total", "Objects created or applied, by kind"),
            &["kind"],
        )?;
        let clusters = IntGaugeVec::new(
            Opts::new("dolphin_operator_clusters", "Managed ImClusters, by condition and status"),
            &["condition", "status"],
        )?;
        for condition in CONDITIONS {
            for status in STATUSES {
                clusters.with_label_values(&[condition, status]);
            }
        }
        registry.register(Box::new(clusters.clone()))?;
        registry.register(Box::new(reconciles_total.clone()))?;
        registry.register(Box::new(failures_total.clone()))?;
        registry.register(Box::new(reconcile_seconds.clone()))?;
        registry.register(Box::new(writes_total.clone()))?;
        Ok(Metrics {
            registry,
            reconciles_total,
            failures_total,
            reconcile_seconds,
            writes_total,
            clusters,
        })
    }

    /// Sets `dolphin_operator_clusters` from the statuses of every managed cluster.
    pub fn count_clusters<'a>(&self, statuses: impl Iterator<Item = Option<&'a ImClusterStatus>>) {
        let mut counts = std::collections::HashMap::<(&str, &str), i64>::new();
        for status in statuses {
            for condition in CONDITIONS {
                let value = crate::status::condition_status(status, condition).unwrap_or("Unknown");
                let value = STATUSES.into_iter().find(|s| *s == value).unwrap_or("Unknown");
                *counts.entry((condition, value)).or_default() += 1;
            }
        }
        for condition in CONDITIONS {
            for status in STATUSES {
                let count = counts.get(&(condition, status)).copied().unwrap_or(0);
                self.clusters.with_label_values(&[condition, status]).set(count);
            }
        }
    }

    /// The metrics in Prometheus's text format.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if encoder.encode_utf8(&self.registry.gather(), &mut out).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(ready: &str, degraded: &str) -> ImClusterStatus {
        let condition = |type_: &str, status: &str| {
            serde_json::json!({"type": type_, "status": status, "reason": "R", "message": "m",
                "lastTransitionTime": "2026-12-04T00:00:00Z"})
        };
        serde_json::from_value(serde_json::json!({
            "conditions": [condition("Ready", ready), condition("Degraded", degraded)],
        }))
        .unwrap()
    }

    #[test]
    fn clusters_are_counted_by_condition_and_status() {
        let metrics = Metrics::new().unwrap();
        let (a, b) = (status("True", "False"), status("False", "True"));
        metrics.count_clusters([Some(&a), Some(&b), Some(&a), None].into_iter());
        let count = |c: &str, s: &str| metrics.clusters.with_label_values(&[c, s]).get();
        assert_eq!((count("Ready", "True"), count("Ready", "False")), (2, 1));
        assert_eq!(count("Ready", "Unknown"), 1, "a cluster without status yet");
        assert_eq!((count("Degraded", "True"), count("Degraded", "False")), (1, 2));
        assert_eq!(count("Progressing", "Unknown"), 4, "no cluster reported Progressing");
        // A cluster gone is counted no more.
        metrics.count_clusters([Some(&a)].into_iter());
        assert_eq!((count("Ready", "True"), count("Ready", "False")), (1, 0));
    }
}
