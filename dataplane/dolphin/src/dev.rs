//! `dolphin dev`: every part of Dolphin in one process, with its data in one folder.
//!
//! The same code paths as a cluster: shards are openraft groups over redb, the edge is the
//! same axum server. Only the transport between them is in-process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use dolphin_edge::auth::Verifier;
use dolphin_edge::{Backend, Edge, EdgeConfig, ShardLink};
use dolphin_sequencer::network::HttpNetwork;
use dolphin_sequencer::query::{Answer, Query};
use dolphin_sequencer::{SequencerMetrics, Shard, ShardConfig};
use dolphin_state::{Command, Policy};
use dolphin_topology::{DEFAULT_SLOTS, Topology};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::secrets;

/// How long connections get to close after a shutdown signal.
pub const DRAIN: Duration = Duration::from_secs(5);

/// The settings of `dolphin dev`.
#[derive(Clone, Debug)]
pub struct DevConfig {
    pub data: PathBuf,
    pub shards: u32,
    pub replicas: u32,
    pub policy: Policy,
    pub send_rate_per_sec: u32,
    pub send_burst: u32,
}

/// A running `dolphin dev`.
#[derive(Debug)]
pub struct Dev {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Dev {
    /// Starts shutting down: no new connections, open ones closed.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until everything has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("dolphin dev panicked")?
    }
}

/// Loads the topology kept in the data folder, or creates it for `shards` shards. The shard
/// count is fixed for a folder's life: routing depends on it.
fn topology(data: &Path, shards: u32) -> anyhow::Result<Topology> {
    let path = data.join("topology.yaml");
    if path.exists() {
        let topology = Topology::load(&path)?;
        if topology.shards.len() != shards as usize {
            bail!(
                "{} was created with {} shards; start with --shards {} or use another --data folder",
                data.display(),
                topology.shards.len(),
                topology.shards.len()
            );
        }
        return Ok(topology);
    }
    let epoch = secrets::random_hex(8);
    let topology = Topology::even(epoch, shards, DEFAULT_SLOTS);
    let yaml = topology.to_yaml();
    secrets::read_or_create(&path, || yaml)?;
    Ok(topology)
}

/// Opens the data folder, starts every shard and the edge on `listener`.
pub async fn start(config: DevConfig, listener: TcpListener) -> anyhow::Result<Dev> {
    if config.shards == 0 || config.shards > 256 {
        bail!("--shards must be 1 to 256");
    }
    if config.replicas != 1 {
        bail!("--replicas above 1 needs replicas that reach each other; only 1 is supported yet");
    }
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("failed to create {}", config.data.display()))?;
    let topology = topology(&config.data, config.shards)?;
    let secret = secrets::jwt_secret(&config.data)?;
    let registry = prometheus::Registry::new();
    let sequencer_metrics = SequencerMetrics::register(&registry)?;

    let mut links = Vec::new();
    let mut all = Vec::new();
    for shard in &topology.shards {
        let dir = config.data.join(format!("shard-{}", shard.id)).join("replica-1");
        let shard_config = ShardConfig {
            shard: shard.id,
            replica: 1,
            data_dir: dir,
            addr: "in-process".into(),
            raft: ShardConfig::default_raft(shard.id),
            request_timeout: Duration::from_secs(5),
        };
        let network = HttpNetwork::new(Duration::from_secs(1));
        let replica = Shard::open(shard_config, network, sequencer_metrics.clone())
            .await
            .with_context(|| format!("failed to open shard {}", shard.id))?;
        replica.bootstrap(&BTreeMap::new()).await?;
        links.push((shard.id, ShardLink::Local(vec![replica.clone()])));
        all.push(replica);
    }
    let backend = Arc::new(Backend::new(&topology, links));
    apply_policy(&backend, &config.policy).await?;

    let verifier = Verifier::new(secret.as_bytes(), &[])?;
    let mut edge_config = EdgeConfig::new(topology.epoch.clone(), verifier);
    edge_config.send_rate_per_sec = config.send_rate_per_sec;
    edge_config.send_burst = config.send_burst;
    let shutdown = CancellationToken::new();
    let edge = Edge::start(edge_config, backend, registry, shutdown.clone())?;
    let addr = listener.local_addr()?;
    info!(%addr, shards = config.shards, data = %config.data.display(), "dolphin dev started");

    let task = tokio::spawn(async move {
        dolphin_edge::serve(listener, edge.clone()).await?;
        edge.drained(DRAIN).await;
        for replica in all {
            replica.shutdown().await;
        }
        info!("dolphin dev stopped");
        Ok(())
    });
    Ok(Dev { addr, shutdown, task })
}

/// Makes every shard's replicated policy equal `policy`, through the log so that every
/// replica switches at the same point.
async fn apply_policy(backend: &Backend, policy: &Policy) -> anyhow::Result<()> {
    for (id, link) in backend.links() {
        let current = link
            .query(Query::Policy)
            .await
            .with_context(|| format!("failed to read the policy of shard {id}"))?;
        if matches!(current, Answer::Policy { policy: ref p } if p == policy) {
            continue;
        }
        link.submit(Command::SetPolicy { policy: policy.clone() })
            .await
            .with_context(|| format!("failed to set the policy of shard {id}"))?;
    }
    Ok(())
}
