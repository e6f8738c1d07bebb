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
use dolphin_edge::invite::Invites;
use dolphin_edge::{Backend, Edge, EdgeConfig, ShardLink};
use dolphin_sequencer::query::{Answer, Query};
use dolphin_sequencer::{SequencerMetrics, ShardConfig};
use dolphin_state::{Command, Policy};
use dolphin_topology::{DEFAULT_SLOTS, Replica, Topology};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::replica::{self, ReplicaSpec};
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
    /// Where sends wait for their shard: the embedded queue unless a Redis URL is given.
    pub queue: crate::queue::QueueArgs,
    /// Where uploaded files are kept: `files` in the data folder unless set otherwise.
    pub files: dolphin_files::FilesArgs,
    /// Call signaling and the ICE servers handed to clients.
    pub calls: dolphin_edge::calls::CallConfig,
    /// How long a user's last device must stay away before friends see them offline.
    pub presence_debounce: Duration,
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

/// Loads the topology kept in the data folder, or creates it for `shards` shards of
/// `replicas` replicas on free loopback ports. Shard and replica counts are fixed for a
/// folder's life: routing depends on the first, and the Raft membership (with each replica's
/// address) on the second. Returns the listeners of every replica, bound to the addresses the
/// topology names.
async fn topology(
    data: &Path,
    shards: u32,
    replicas: u32,
) -> anyhow::Result<(Topology, BTreeMap<(u32, u64), TcpListener>)> {
    let path = data.join("topology.yaml");
    let mut listeners = BTreeMap::new();
    if path.exists() {
        let topology = Topology::load(&path)?;
        let kept_replicas = topology.shards.first().map_or(0, |s| s.replicas.len());
        if topology.shards.len() != shards as usize || kept_replicas != replicas as usize {
            bail!(
                "{} was created with --shards {} --replicas {}; start with those or use another \
                 --data folder",
                data.display(),
                topology.shards.len(),
                kept_replicas
            );
        }
        for shard in &topology.shards {
            for replica in &shard.replicas {
                let listener = TcpListener::bind(&replica.addr).await.with_context(|| {
                    format!(
                        "failed to listen on {} for shard {} replica {}",
                        replica.addr, shard.id, replica.id
                    )
                })?;
                listeners.insert((shard.id, replica.id), listener);
            }
        }
        return Ok((topology, listeners));
    }
    let epoch = secrets::random_hex(8);
    let mut topology = Topology::even(epoch, shards, DEFAULT_SLOTS);
    for shard in &mut topology.shards {
        for id in 1..=u64::from(replicas) {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?.to_string();
            shard.replicas.push(Replica { id, addr });
            listeners.insert((shard.id, id), listener);
        }
    }
    let yaml = topology.to_yaml();
    secrets::read_or_create(&path, || yaml)?;
    Ok((topology, listeners))
}

/// Opens the data folder, starts every shard and the edge on `listener`.
pub async fn start(config: DevConfig, listener: TcpListener) -> anyhow::Result<Dev> {
    if config.shards == 0 || config.shards > 256 {
        bail!("--shards must be 1 to 256");
    }
    if ![1, 3, 5].contains(&config.replicas) {
        bail!("--replicas must be 1, 3 or 5");
    }
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("failed to create {}", config.data.display()))?;
    let (topology, mut listeners) = topology(&config.data, config.shards, config.replicas).await?;
    let secret = secrets::jwt_secret(&config.data)?;
    let registry = prometheus::Registry::new();
    let sequencer_metrics = SequencerMetrics::register(&registry)?;
    let queue = config.queue.connect(&topology.epoch, config.shards, Some(&config.data)).await?;

    let shutdown = CancellationToken::new();
    let mut links = Vec::new();
    let mut all = Vec::new();
    for shard in &topology.shards {
        // Each replica serves Raft RPC on a loopback port of its own, as it would in a cluster.
        let members: BTreeMap<u64, String> =
            shard.replicas.iter().map(|r| (r.id, r.addr.clone())).collect();
        let mut replicas = Vec::new();
        for &replica in members.keys() {
            let listener = listeners
                .remove(&(shard.id, replica))
                .context("every replica of the topology has a listener")?;
            let spec = ReplicaSpec {
                shard: shard.id,
                replica,
                data: config
                    .data
                    .join(format!("shard-{}", shard.id))
                    .join(format!("replica-{replica}")),
                advertise: members[&replica].clone(),
                bootstrap: members.clone(),
                fault_injection: false,
                raft: ShardConfig::default_raft(shard.id),
                queue: queue.clone(),
                router: topology.router(),
            };
            let running = replica::start(
                spec,
                listener,
                registry.clone(),
                sequencer_metrics.clone(),
                shutdown.clone(),
            )
            .await?;
            replicas.push(running.shard.clone());
            all.push(running);
        }
        links.push((shard.id, ShardLink::Local(replicas)));
    }
    let backend = Arc::new(Backend::new(&topology, links));
    apply_policy(&backend, &config.policy).await?;

    let verifier = Verifier::new(secret.as_bytes(), &[])?;
    let mut edge_config = EdgeConfig::new(topology.epoch.clone(), verifier);
    edge_config.send_rate_per_sec = config.send_rate_per_sec;
    edge_config.send_burst = config.send_burst;
    edge_config.files = config.files.open(Some(&config.data.join("files")))?;
    edge_config.calls = config.calls.clone();
    edge_config.invites = Some(Invites::from_token_secret(secret.as_bytes())?);
    edge_config.presence_debounce = config.presence_debounce;
    let edge = Edge::start(edge_config, backend, queue, registry, shutdown.clone()).await?;
    let addr = listener.local_addr()?;
    info!(%addr, shards = config.shards, data = %config.data.display(), "dolphin dev started");

    let task = tokio::spawn(async move {
        dolphin_edge::serve(listener, edge.clone()).await?;
        edge.drained(DRAIN).await;
        for running in all {
            running.shard.shutdown().await;
            let _ = running.server.await;
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
