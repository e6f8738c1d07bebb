//! The operator's Prometheus metrics.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

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
        registry.register(Box::new(reconciles_total.clone()))?;
        registry.register(Box::new(failures_total.clone()))?;
        registry.register(Box::new(reconcile_seconds.clone()))?;
        registry.register(Box::new(writes_total.clone()))?;
        Ok(Metrics { registry, reconciles_total, failures_total, reconcile_seconds, writes_total })
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
