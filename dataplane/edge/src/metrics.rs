//! The metrics of an edge.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Counters and histograms of one edge.
#[derive(Clone, Debug)]
pub struct EdgeMetrics {
    /// WebSocket connections by state: `open` (serving) or `closing` (its close frame on the
    /// way).
    pub connections: IntGaugeVec,
    /// Connections opened since start.
    pub connections_opened: IntCounter,
    /// Upgrades refused, by reason (`unauthorized`, `bad_request`).
    pub refused: IntCounterVec,
    /// Client frames received, by type (`invalid` for undecodable ones).
    pub frames_in: IntCounterVec,
    /// Frames sent, by type.
    pub frames_out: IntCounterVec,
    /// `frames_out` for `msg`, resolved once: the counter of nearly every frame out.
    pub msgs_out: IntCounter,
    /// Error replies, by code.
    pub errors: IntCounterVec,
    /// Connections a single pushed frame was queued for.
    pub fanout: Histogram,
    /// Connections disconnected because their push queue was full.
    pub overflows: IntCounter,
    /// Times this edge missed events of a shard and disconnected its devices to resync.
    pub event_gaps: IntCounter,
    /// Time from receiving a `send` to answering `accepted`.
    pub send_accepted_seconds: Histogram,
    /// Time from receiving a `send` to queuing its `msg` for the sending device.
    pub send_push_seconds: Histogram,
    /// Time for the queue to take one send (the XADD, or the embedded append).
    pub queue_push_seconds: Histogram,
    /// Sends the queue did not take, by reason (`unavailable`, `error`, `no_quorum`).
    pub queue_push_failures: IntCounterVec,
    /// Calls ended by a notice from this edge, by outcome.
    pub calls: IntCounterVec,
}

impl EdgeMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let latency = || prometheus::exponential_buckets(0.0005, 2.0, 15);
        let frames_out = IntCounterVec::new(
            Opts::new("dolphin_edge_frames_out_total", "Frames sent to clients."),
            &["type"],
        )?;
        let metrics = EdgeMetrics {
            connections: IntGaugeVec::new(
                Opts::new("dolphin_edge_connections", "WebSocket connections, by state."),
                &["state"],
            )?,
            connections_opened: IntCounter::new(
                "dolphin_edge_connections_opened_total",
                "WebSocket connections opened.",
            )?,
            refused: IntCounterVec::new(
                Opts::new("dolphin_edge_upgrades_refused_total", "WebSocket upgrades refused."),
                &["reason"],
            )?,
            frames_in: IntCounterVec::new(
                Opts::new("dolphin_edge_frames_in_total", "Client frames received."),
                &["type"],
            )?,
            frames_out: frames_out.clone(),
            msgs_out: frames_out.with_label_values(&["msg"]),
            errors: IntCounterVec::new(
                Opts::new("dolphin_edge_error_replies_total", "Error replies sent, by code."),
                &["code"],
            )?,
            fanout: Histogram::with_opts(
                HistogramOpts::new(
                    "dolphin_edge_push_fanout_connections",
                    "Connections one pushed frame was queued for.",
                )
                .buckets(prometheus::exponential_buckets(1.0, 4.0, 9)?),
            )?,
            overflows: IntCounter::new(
                "dolphin_edge_push_overflow_disconnects_total",
                "Connections closed because their push queue was full.",
            )?,
            event_gaps: IntCounter::new(
                "dolphin_edge_event_gaps_total",
                "Times events of a shard were lost to this edge and its devices had to resync.",
            )?,
            send_accepted_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "dolphin_edge_send_accepted_seconds",
                    "Time from a send to its accepted reply.",
                )
                .buckets(latency()?),
            )?,
            send_push_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "dolphin_edge_send_push_seconds",
                    "Time from a send to the push of its message to the sending device.",
                )
                .buckets(latency()?),
            )?,
            queue_push_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "dolphin_queue_push_seconds",
                    "Time for the queue to take one send.",
                )
                .buckets(latency()?),
            )?,
            queue_push_failures: IntCounterVec::new(
                Opts::new(
                    "dolphin_queue_push_failures_total",
                    "Sends not queued, by reason: the queue unavailable or failing, or the \
                     shard without a quorum.",
                ),
                &["reason"],
            )?,
            calls: IntCounterVec::new(
                Opts::new(
                    "dolphin_edge_calls_total",
                    "Calls ended by this edge, by outcome: completed, missed, rejected, cancelled.",
                ),
                &["outcome"],
            )?,
        };
        // Known label values start at zero, so that a rate over them exists before the
        // first event (and alerts and dashboards see 0 rather than nothing).
        for reason in ["unavailable", "error", "no_quorum"] {
            metrics.queue_push_failures.with_label_values(&[reason]);
        }
        for outcome in ["completed", "missed", "rejected", "cancelled"] {
            metrics.calls.with_label_values(&[outcome]);
        }
        for state in ["open", "closing"] {
            metrics.connections.with_label_values(&[state]);
        }
        for reason in ["unauthorized", "bad_request"] {
            metrics.refused.with_label_values(&[reason]);
        }
        registry.register(Box::new(metrics.queue_push_seconds.clone()))?;
        registry.register(Box::new(metrics.queue_push_failures.clone()))?;
        registry.register(Box::new(metrics.connections.clone()))?;
        registry.register(Box::new(metrics.connections_opened.clone()))?;
        registry.register(Box::new(metrics.refused.clone()))?;
        registry.register(Box::new(metrics.frames_in.clone()))?;
        registry.register(Box::new(metrics.frames_out.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        registry.register(Box::new(metrics.fanout.clone()))?;
        registry.register(Box::new(metrics.overflows.clone()))?;
        registry.register(Box::new(metrics.event_gaps.clone()))?;
        registry.register(Box::new(metrics.send_accepted_seconds.clone()))?;
        registry.register(Box::new(metrics.send_push_seconds.clone()))?;
        registry.register(Box::new(metrics.calls.clone()))?;
        Ok(metrics)
    }
}
