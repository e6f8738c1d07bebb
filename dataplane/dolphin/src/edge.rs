//! `dolphin edge`: a WebSocket edge as its own process, reaching shards over the network.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use dolphin_edge::auth::Verifier;
use dolphin_edge::invite::Invites;
use dolphin_edge::{Backend, Edge, EdgeConfig};
use dolphin_topology::Topology;
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
    #[arg(
        long,
        env = "DOLPHIN_SEND_RATE",
        default_value_t = dolphin_edge::config::SEND_RATE_PER_SEC
    )]
    pub send_rate: u32,
    /// Sends a user may make at once above the sustained rate.
    #[arg(long, env = "DOLPHIN_SEND_BURST", default_value_t = dolphin_edge::config::SEND_BURST)]
    pub send_burst: u32,
    #[command(flatten)]
    pub queue: crate::queue::QueueArgs,
    #[command(flatten)]
    pub files: dolphin_files::FilesArgs,
    #[command(flatten)]
    pub calls: CallArgs,
    /// How long a user's last device must stay away before friends see them offline.
    #[arg(long, env = "DOLPHIN_PRESENCE_DEBOUNCE", default_value = "5s",
        value_parser = humantime::parse_duration)]
    pub presence_debounce: Duration,
    /// How often this edge repeats which users it holds, so that the others notice when it is
    /// gone (after three periods of silence) and tell its users' friends.
    #[arg(long, env = "DOLPHIN_PRESENCE_BEAT", default_value = "10s",
        value_parser = humantime::parse_duration)]
    pub presence_beat: Duration,
}

/// The settings of call signaling and of `GET /v1/ice`, shared by `dolphin edge` and `dev`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CallArgs {
    /// A STUN server URL handed to clients (`stun:host:port`); repeat for several.
    #[arg(long = "stun-url", env = "DOLPHIN_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,
    /// A TURN server URL handed to clients (`turn:host:port?transport=udp`); repeat for several.
    #[arg(long = "turn-url", env = "DOLPHIN_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN servers (coturn's static-auth-secret), for credentials
    /// in the TURN REST form.
    #[arg(long, env = "DOLPHIN_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// How long handed-out TURN credentials stay valid.
    #[arg(long, env = "DOLPHIN_TURN_TTL", value_parser = humantime::parse_duration)]
    pub turn_ttl: Option<Duration>,
    /// How long an invite rings before the call ends as missed (tests shorten it).
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    pub ring_timeout: Option<Duration>,
}

impl CallArgs {
    /// The edge's call settings: these flags over the defaults.
    pub fn config(&self) -> dolphin_edge::calls::CallConfig {
        let mut config = dolphin_edge::calls::CallConfig::default();
        config.ice.stun_urls = self.stun_urls.clone();
        config.ice.turn_urls = self.turn_urls.clone();
        config.ice.turn_secret = self.turn_secret.clone().filter(|s| !s.is_empty());
        config.ice.turn_ttl = self.turn_ttl.unwrap_or(config.ice.turn_ttl);
        config.ring_timeout = self.ring_timeout.unwrap_or(config.ring_timeout);
        config
    }
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
    config.files = args.files.open(None)?;
    match &config.files {
        Some(store) => info!(location = store.location(), "files stored"),
        None => warn!("no --files-url or --files-dir: file uploads answer 503 unavailable"),
    }
    config.calls = args.calls.config();
    config.invites = Some(Invites::from_token_secret(secret.as_bytes())?);
    config.presence_debounce = args.presence_debounce;
    config.presence_beat = args.presence_beat.max(Duration::from_millis(10));

    let backend = Arc::new(Backend::remote(&topology));
    let registry = prometheus::Registry::new();
    let queue = args.queue.connect(&topology.epoch, topology.shards.len() as u32, None).await?;
    let edge = Edge::start(config, backend, queue, registry, shutdown.clone()).await?;
    let listener = dolphin_edge::listen(args.listen)
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
