//! The metrics of sequencer replicas.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// The roles a replica can have, as the `role` label of `dolphin_sequencer_role`.
pub const ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

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
    /// 1 for the replica's current role, 0 for the others (by shard, replica, role).
    pub role: IntGaugeVec,
    /// The replica's Raft term (by shard, replica).
    pub term: IntGaugeVec,
    /// Times the replica saw the shard's leader change (by shard, replica).
    pub leader_changes: IntCounterVec,
    /// The last log index the replica applied (by shard, replica).
    pub applied_index: IntGaugeVec,
    /// The last index in the replica's log (by shard, replica).
    pub last_log_index: IntGaugeVec,
    /// Size of each snapshot built or installed.
    pub snapshot_bytes: Histogram,
    /// Inbox entries delivered and not acknowledged, as the shard's leader last saw them.
    pub queue_pending: IntGaugeVec,
    /// Inbox entries never delivered to the leader yet, as the leader last saw them.
    pub queue_lag: IntGaugeVec,
    /// Inbox entries taken over from an earlier leader (claimed pending entries).
    pub queue_redeliveries: IntCounterVec,
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
            role: IntGaugeVec::new(
                Opts::new("dolphin_sequencer_role", "1 for the replica's current Raft role."),
                &["shard", "replica", "role"],
            )?,
            term: IntGaugeVec::new(
                Opts::new("dolphin_sequencer_term", "The replica's current Raft term."),
                &["shard", "replica"],
            )?,
            leader_changes: IntCounterVec::new(
                Opts::new(
                    "dolphin_sequencer_leader_changes_total",
                    "Changes of the shard's leader seen by the replica.",
                ),
                &["shard", "replica"],
            )?,
            applied_index: IntGaugeVec::new(
                Opts::new("dolphin_sequencer_applied_index", "The last log index applied."),
                &["shard", "replica"],
            )?,
            last_log_index: IntGaugeVec::new(
                Opts::new("dolphin_sequencer_last_log_index", "The last index in the log."),
                &["shard", "replica"],
            )?,
            snapshot_bytes: Histogram::with_opts(
                HistogramOpts::new(
                    "dolphin_sequencer_snapshot_bytes",
                    "Size of the snapshots built or installed.",
                )
                .buckets(prometheus::exponential_buckets(4096.0, 4.0, 12)?),
            )?,
            queue_pending: IntGaugeVec::new(
                Opts::new(
                    "dolphin_queue_pending_entries",
                    "Inbox entries delivered to the shard's leader and not yet acknowledged.",
                ),
                &["shard"],
            )?,
            queue_lag: IntGaugeVec::new(
                Opts::new(
                    "dolphin_queue_consumer_lag_entries",
                    "Inbox entries not yet delivered to the shard's leader.",
                ),
                &["shard"],
            )?,
            queue_redeliveries: IntCounterVec::new(
                Opts::new(
                    "dolphin_queue_redeliveries_total",
                    "Inbox entries a new leader took over from an earlier one.",
                ),
                &["shard"],
            )?,
        };
        registry.register(Box::new(metrics.role.clone()))?;
        registry.register(Box::new(metrics.term.clone()))?;
        registry.register(Box::new(metrics.leader_changes.clone()))?;
        registry.register(Box::new(metrics.applied_index.clone()))?;
        registry.register(Box::new(metrics.last_log_index.clone()))?;
        registry.register(Box::new(metrics.snapshot_bytes.clone()))?;
        registry.register(Box::new(metrics.queue_pending.clone()))?;
        registry.register(Box::new(metrics.queue_lag.clone()))?;
        registry.register(Box::new(metrics.queue_redeliveries.clone()))?;
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
