//! `dolphin edge`: a WebSocket edge as its own process, reaching shards over the network.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use dolphin_edge::auth::Verifier;
use dolphin_edge::{Backend, Edge, EdgeConfig};
use dolphin_topology::Topology;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::secrets::JWT_SECRET_ENV;

/// How often the topology file is read again. Kubernetes updates a mounted ConfigMap within a
/// minute or so; polling is what survives its symlink swaps.
pub const TOPOLOGY_POLL: Duration = Duration::from_secs(2);

/// The settings of `dolphin edge`.
#[derive(Clone, Debug, clap::Args)]
pub struct EdgeArgs {
    /// Address to serve WebSocket clients and HTTP on.
    #[arg(long, env = "DOLPHIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The topology file (YAML); read again when it changes.
    #[arg(long, env = "DOLPHIN_TOPOLOGY")]
    pub topology: PathBuf,
    /// A file holding the HS256 secret (else the DOLPHIN_JWT_SECRET variable).
    #[arg(long, env = "DOLPHIN_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM files of RSA public keys accepted for RS256 tokens.
    #[arg(long = "jwt-rsa-public-key", env = "DOLPHIN_JWT_RSA_PUBLIC_KEYS", value_delimiter = ',')]
    pub jwt_rsa_public_keys: Vec<PathBuf>,
    /// Sends per second each user may sustain on this edge.
    #[arg(long, env = "DOLPHIN_SEND_RATE", default_value_t = dolphin_edge::config::SEND_RATE_PER_SEC)]
    pub send_rate: u32,
    /// Sends a user may make at once above the sustained rate.
    #[arg(long, env = "DOLPHIN_SEND_BURST", default_value_t = dolphin_edge::config::SEND_BURST)]
    pub send_burst: u32,
    #[command(flatten)]
    pub queue: crate::queue::QueueArgs,
}

fn secret(args: &EdgeArgs) -> anyhow::Result<String> {
    if let Some(path) = &args.jwt_secret_file {
        let secret = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        return Ok(secret.trim().to_owned());
    }
    match std::env::var(JWT_SECRET_ENV) {
        Ok(secret) if !secret.is_empty() => Ok(secret),
        _ => bail!("no JWT secret: set {JWT_SECRET_ENV} or --jwt-secret-file"),
    }
}

/// Serves clients until `shutdown`, then drains.
pub async fn run(args: EdgeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topology = Topology::load(&args.topology)?;
    let secret = secret(&args)?;
    let pems = args
        .jwt_rsa_public_keys
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("failed to read {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let verifier = Verifier::new(secret.as_bytes(), &pems)?;
    let mut config = EdgeConfig::new(topology.epoch.clone(), verifier);
    config.send_rate_per_sec = args.send_rate;
    config.send_burst = args.send_burst;

    let backend = Arc::new(Backend::remote(&topology));
    let registry = prometheus::Registry::new();
    let queue = args.queue.connect(&topology.epoch, topology.shards.len() as u32, None).await?;
    let edge = Edge::start(config, backend, queue, registry, shutdown.clone()).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    tokio::spawn(watch_topology(args.topology.clone(), edge.clone(), shutdown.clone()));
    dolphin_edge::serve(listener, edge.clone()).await?;
    edge.drained(crate::dev::DRAIN).await;
    info!("edge stopped");
    Ok(())
}

/// Reads the topology file again whenever it changes, and applies newer versions.
async fn watch_topology(path: PathBuf, edge: Edge, shutdown: CancellationToken) {
    let mut last = std::fs::read(&path).ok();
    let mut every = tokio::time::interval(TOPOLOGY_POLL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let Ok(bytes) = std::fs::read(&path) else { continue };
        if last.as_ref() == Some(&bytes) {
            continue;
        }
        last = Some(bytes);
        match Topology::load(&path) {
            Ok(topology) => {
                let before = edge.ctx.backend.version();
                edge.update_topology(&topology);
                if topology.version > before {
                    info!(version = topology.version, "topology updated");
                }
            }
            Err(error) => warn!(error = %error, "ignoring an invalid topology file"),
        }
    }
}
