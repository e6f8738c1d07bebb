//! `dolphin sequencer`: one replica of one shard, as its own process.

use std::path::PathBuf;

use anyhow::{Context, bail};
use dolphin_sequencer::{SequencerMetrics, ShardConfig};
use dolphin_topology::Topology;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::replica::{self, ReplicaSpec};

/// The settings of `dolphin sequencer`.
#[derive(Clone, Debug, clap::Args)]
pub struct SequencerArgs {
    /// The shard this replica belongs to.
    #[arg(long, env = "DOLPHIN_SHARD")]
    pub shard: u32,
    /// This replica's id within its shard (its Raft node id).
    #[arg(long, env = "DOLPHIN_REPLICA")]
    pub id: u64,
    /// Address to serve on; defaults to the replica's address in the topology.
    #[arg(long, env = "DOLPHIN_LISTEN")]
    pub listen: Option<String>,
    /// This replica's folder: Raft log, state and snapshots.
    #[arg(long, env = "DOLPHIN_DATA")]
    pub data: PathBuf,
    /// The topology file (YAML).
    #[arg(long, env = "DOLPHIN_TOPOLOGY")]
    pub topology: PathBuf,
    /// Do not form the shard from the topology's replicas: wait to be added as a learner by
    /// the leader (for replicas added to a running shard).
    #[arg(long, env = "DOLPHIN_NO_BOOTSTRAP")]
    pub no_bootstrap: bool,
    /// Serve `/admin/isolate`, which cuts this replica off from its peers (for tests).
    #[arg(long, env = "DOLPHIN_FAULT_INJECTION")]
    pub enable_fault_injection: bool,
    /// Build a snapshot every this many log entries (and purge the log behind it).
    #[arg(long, env = "DOLPHIN_SNAPSHOT_EVERY", default_value_t = 20_000)]
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot, for followers that lag a little.
    #[arg(long, env = "DOLPHIN_SNAPSHOT_KEEP", default_value_t = 5_000)]
    pub snapshot_keep: u64,
    #[command(flatten)]
    pub queue: crate::queue::QueueArgs,
}

/// Runs the replica until `shutdown`.
pub async fn run(args: SequencerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topology = Topology::load(&args.topology)?;
    let Some(shard) = topology.shard(args.shard) else {
        bail!("the topology has no shard {}", args.shard);
    };
    let Some(me) = shard.replicas.iter().find(|r| r.id == args.id) else {
        bail!("the topology lists no replica {} in shard {}", args.id, args.shard);
    };
    let listen = args.listen.clone().unwrap_or_else(|| me.addr.clone());
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("failed to listen on {listen}"))?;
    // A replica added to a running shard (not a founder, or told so) waits for the leader.
    let bootstrap = if args.no_bootstrap {
        Default::default()
    } else {
        shard.bootstrap_members(args.id).into_iter().map(|r| (r.id, r.addr.clone())).collect()
    };
    let registry = prometheus::Registry::new();
    let metrics = SequencerMetrics::register(&registry)?;
    let queue = args.queue.connect(&topology.epoch, topology.shards.len() as u32, None).await?;
    let spec = ReplicaSpec {
        shard: args.shard,
        replica: args.id,
        data: args.data,
        advertise: me.addr.clone(),
        bootstrap,
        fault_injection: args.enable_fault_injection,
        raft: openraft::Config {
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(args.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: args.snapshot_keep,
            ..ShardConfig::default_raft(args.shard)
        },
        queue,
        router: topology.router(),
    };
    let running = replica::start(spec, listener, registry, metrics, shutdown.clone()).await?;
    shutdown.cancelled().await;
    info!("stopping replica");
    running.shard.shutdown().await;
    running.server.await.context("replica server panicked")??;
    Ok(())
}
