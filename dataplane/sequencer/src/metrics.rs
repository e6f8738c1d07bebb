//! The metrics of sequencer replicas.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// Counters and histograms of the sequencer, shared by the shards of a process.
#[derive(Clone, Debug)]
pub struct SequencerMetrics {
    /// Commands proposed by this process, by operation.
    pub proposals: IntCounterVec,
    /// Commands per proposed batch.
    pub batch_size: Histogram,
    /// Time from proposing a batch to its applied result.
    pub commit_seconds: Histogram,
    /// Time to apply one batch of entries to the state, fsync included.
    pub apply_seconds: Histogram,
    /// Messages given a seq by this replica's state machine.
    pub messages_ordered: IntCounter,
    /// Commands refused by the state machine, by code.
    pub rejects: IntCounterVec,
}

impl SequencerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = SequencerMetrics {
            proposals: IntCounterVec::new(
                Opts::new("dolphin_sequencer_proposals_total", "Commands proposed to Raft."),
                &["op"],
            )?,
            batch_size: Histogram::with_opts(
                HistogramOpts::new(
                    "dolphin_sequencer_batch_commands",
                    "Commands per proposed batch.",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
            )?,
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "dolphin_sequencer_commit_seconds",
                    "Time from proposing a batch to its applied result.",
                )
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14)?),
            )?,
            apply_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "dolphin_sequencer_apply_seconds",
                    "Time to apply a batch of log entries to the state, fsync included.",
                )
                .buckets(prometheus::exponential_buckets(0.0001, 2.0, 14)?),
            )?,
            messages_ordered: IntCounter::new(
                "dolphin_sequencer_messages_ordered_total",
                "Messages given a seq by this replica.",
            )?,
            rejects: IntCounterVec::new(
                Opts::new(
                    "dolphin_sequencer_rejects_total",
                    "Commands refused by the state machine.",
                ),
                &["code"],
            )?,
        };
        registry.register(Box::new(metrics.proposals.clone()))?;
        registry.register(Box::new(metrics.batch_size.clone()))?;
        registry.register(Box::new(metrics.commit_seconds.clone()))?;
        registry.register(Box::new(metrics.apply_seconds.clone()))?;
        registry.register(Box::new(metrics.messages_ordered.clone()))?;
        registry.register(Box::new(metrics.rejects.clone()))?;
        Ok(metrics)
    }

    /// Metrics registered nowhere, for tests and tools.
    pub fn unregistered() -> Self {
        // Registering into a fresh registry cannot collide.
        Self::register(&Registry::new()).unwrap_or_else(|_| unreachable!("fresh registry"))
    }
}
