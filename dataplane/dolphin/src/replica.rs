//! Starting one sequencer replica with its HTTP server: shared by `dolphin sequencer` and by
//! `dolphin dev --replicas N`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dolphin_sequencer::network::HttpNetwork;
use dolphin_sequencer::server::{Isolation, ReplicaServer};
use dolphin_sequencer::{SequencerMetrics, Shard, ShardConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// What one replica needs to start.
#[derive(Debug)]
pub struct ReplicaSpec {
    pub shard: u32,
    pub replica: u64,
    pub data: PathBuf,
    /// The address the other replicas reach this one at.
    pub advertise: String,
    /// The shard's first membership, for a fresh shard; empty to wait to be added.
    pub bootstrap: BTreeMap<u64, String>,
    pub fault_injection: bool,
    pub raft: openraft::Config,
    /// The queue whose inbox this replica consumes while it leads.
    pub queue: dolphin_queue::Queue,
    /// Routes what the shard's outbox owes other shards.
    pub router: dolphin_topology::Router,
}

/// A running replica.
#[derive(Debug)]
pub struct RunningReplica {
    pub shard: Arc<Shard>,
    pub server: JoinHandle<std::io::Result<()>>,
}

/// Opens the replica's storage, serves its HTTP API on `listener` until `shutdown`, and
/// bootstraps the shard if it is fresh.
pub async fn start(
    spec: ReplicaSpec,
    listener: TcpListener,
    registry: prometheus::Registry,
    metrics: SequencerMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningReplica> {
    let isolation = Isolation::default();
    let network = HttpNetwork::new(Duration::from_millis(500)).with_isolation(isolation.clone());
    let config = ShardConfig {
        shard: spec.shard,
        replica: spec.replica,
        data_dir: spec.data,
        addr: spec.advertise.clone(),
        raft: spec.raft,
        request_timeout: Duration::from_secs(5),
    };
    let shard = Shard::open(config, network, metrics)
        .await
        .with_context(|| format!("failed to open shard {} replica {}", spec.shard, spec.replica))?;
    let router =
        ReplicaServer::new(shard.clone(), registry, isolation, spec.fault_injection).router();
    tokio::spawn(dolphin_sequencer::inbox::run(
        shard.clone(),
        spec.queue.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(dolphin_sequencer::outbox::run(
        shard.clone(),
        spec.queue.clone(),
        spec.router.clone(),
        shutdown.clone(),
    ));
    let server = tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
    });
    if !spec.bootstrap.is_empty() {
        // Every replica of a fresh shard proposes the same first membership; openraft writes
        // it as the same entry everywhere, so the order in which replicas start does not
        // matter, nor does a restart during bootstrap.
        shard.bootstrap(&spec.bootstrap).await?;
    }
    info!(shard = spec.shard, replica = spec.replica, addr = %spec.advertise, "replica started");
    Ok(RunningReplica { shard, server })
}
