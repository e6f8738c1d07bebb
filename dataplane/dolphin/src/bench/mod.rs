//! `dolphin bench`: load generators that measure Dolphin the way its users would, with the
//! figures in `docs/benchmarks.md`.

pub mod catchup;
pub mod connections;
pub mod fanout;
pub mod pairs;
pub mod sequencer;
pub mod server;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Latency percentiles of a run, in milliseconds.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

impl Percentiles {
    /// Reads a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Percentiles { p50_ms: ms(0.5), p99_ms: ms(0.99), p999_ms: ms(0.999) }
    }
}

/// A histogram of latencies from 1 microsecond to 60 seconds at 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds that hdrhistogram accepts")
}

/// Records one latency.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = elapsed.as_micros().clamp(1, 60_000_000) as u64;
    let _ = histogram.record(micros);
}

/// The load generator's clock: microseconds since the run began, shared by senders (who
/// write it into each message) and receivers (who subtract it), all in this one process.
#[derive(Clone, Debug)]
pub struct Clock(Arc<Instant>);

impl Clock {
    pub fn new() -> Self {
        Clock(Arc::new(Instant::now()))
    }

    pub fn micros(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Prints one line of a benchmark's results: its output, on stdout.
pub fn print_result(line: &str) {
    #[allow(clippy::print_stdout, reason = "the results are the command's output")]
    {
        println!("{line}");
    }
}

/// What a run that sends messages to online connections measured, common to its scenarios:
/// sends, deliveries and their latency, the server's cost, and the correctness counts.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Delivered {
    pub sent: u64,
    pub taken: u64,
    pub refused: u64,
    pub seconds: f64,
    pub deliveries: u64,
    pub deliveries_per_second: f64,
    pub server_cpu_seconds: f64,
    pub deliveries_per_cpu_second: f64,
    pub server_peak_rss_bytes: u64,
    pub latency: Percentiles,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

impl Delivered {
    /// The figures as one line of text.
    pub fn summary(&self) -> String {
        format!(
            "sent={} taken={} deliveries/s={:.0} p50={:.2}ms p99={:.2}ms p99.9={:.2}ms \
             cpu={:.2}s deliveries/cpu-s={:.0} peak-rss={}MiB lost={} dup={} out-of-order={}",
            self.sent,
            self.taken,
            self.deliveries_per_second,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.server_cpu_seconds,
            self.deliveries_per_cpu_second,
            self.server_peak_rss_bytes / (1024 * 1024),
            self.lost,
            self.duplicated,
            self.out_of_order,
        )
    }
}
