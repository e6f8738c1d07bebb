//! The `dolphin` command.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use dolphin::dev::{self, DevConfig};
use dolphin::secrets;
use dolphin_state::{DirectPolicy, Policy};
use tracing_subscriber::EnvFilter;

mod chat;

/// Dolphin: a self-hosted instant-messaging server.
#[derive(Debug, Parser)]
#[command(name = "dolphin", version)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "DOLPHIN_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DirectMessages {
    Anyone,
    Friends,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs everything (edge and shards) in one process, with its data in one folder.
    Dev {
        /// Address to serve WebSocket clients and HTTP on.
        #[arg(long, env = "DOLPHIN_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Folder for messages, the JWT secret and the cluster's identity.
        #[arg(long, env = "DOLPHIN_DATA", default_value = "./dolphin-data")]
        data: PathBuf,
        /// Sequencer shards; fixed once the data folder exists.
        #[arg(long, env = "DOLPHIN_SHARDS", default_value_t = 2)]
        shards: u32,
        /// Raft replicas per shard.
        #[arg(long, env = "DOLPHIN_REPLICAS", default_value_t = 1)]
        replicas: u32,
        /// Who may send direct messages to whom.
        #[arg(long, env = "DOLPHIN_DIRECT_MESSAGES", default_value = "anyone")]
        direct_messages: DirectMessages,
        /// Sends per second each user may sustain.
        #[arg(
            long,
            env = "DOLPHIN_SEND_RATE",
            default_value_t = dolphin_edge::config::SEND_RATE_PER_SEC
        )]
        send_rate: u32,
        /// Sends a user may make at once above the sustained rate.
        #[arg(long, env = "DOLPHIN_SEND_BURST", default_value_t = dolphin_edge::config::SEND_BURST)]
        send_burst: u32,
        #[command(flatten)]
        queue: dolphin::queue::QueueArgs,
        #[command(flatten)]
        files: dolphin_files::FilesArgs,
        #[command(flatten)]
        calls: dolphin::edge::CallArgs,
        /// How long a user's last device must stay away before friends see them offline.
        #[arg(long, env = "DOLPHIN_PRESENCE_DEBOUNCE", default_value = "5s",
            value_parser = humantime::parse_duration)]
        presence_debounce: std::time::Duration,
    },
    /// Prints a token for USER, signed with the secret of the data folder (or
    /// DOLPHIN_JWT_SECRET).
    Token {
        user: String,
        #[arg(long, env = "DOLPHIN_DATA", default_value = "./dolphin-data")]
        data: PathBuf,
        /// Hours the token stays valid.
        #[arg(long, default_value_t = 24 * 30)]
        ttl_hours: u64,
    },
    /// A terminal chat: shows a conversation as it happens and sends what you type.
    Chat(chat::ChatArgs),
    /// Runs one replica of one sequencer shard.
    Sequencer(dolphin::sequencer::SequencerArgs),
    /// Runs a WebSocket edge that reaches the shards named by a topology file.
    Edge(dolphin::edge::EdgeArgs),
    /// Measures Dolphin (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Runs a whole cluster as processes on this machine: shards of replicas, and edges.
    Cluster {
        /// Folder for the topology, the secret, the data and the logs.
        #[arg(long, default_value = "./dolphin-cluster")]
        dir: PathBuf,
        #[arg(long, default_value_t = 2)]
        shards: u32,
        #[arg(long, default_value_t = 3)]
        replicas: u32,
        #[arg(long, default_value_t = 2)]
        edges: u32,
        /// A Redis to queue through (`redis://...`); without it the cluster runs its own
        /// `redis-server` in `DIR/redis`.
        #[arg(long)]
        queue: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Ordered, replicated, fsynced appends to one shard of three replicas.
    Sequencer(dolphin::bench::sequencer::SequencerBenchArgs),
    /// One room of many online members; deliveries/s, latency, server CPU and memory.
    Fanout(dolphin::bench::fanout::FanoutArgs),
    /// Many idle connections; server memory per connection.
    Connections(dolphin::bench::connections::ConnectionsArgs),
    /// Every member of a room reconnects at once and catches up on what it missed.
    Catchup(dolphin::bench::catchup::CatchupArgs),
    /// Many two-person conversations, each side writing to the other.
    Pairs(dolphin::bench::pairs::PairsArgs),
}

fn init_logging(format: LogFormat) {
    // openraft reports every election and tick at info; its warnings are what an operator needs.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev {
            listen,
            data,
            shards,
            replicas,
            direct_messages,
            send_rate,
            send_burst,
            queue,
            files,
            calls,
            presence_debounce,
        } => {
            init_logging(cli.log_format);
            let policy = Policy {
                direct_messages: match direct_messages {
                    DirectMessages::Anyone => DirectPolicy::Anyone,
                    DirectMessages::Friends => DirectPolicy::Friends,
                },
                ..Policy::default()
            };
            let config = DevConfig {
                data,
                shards,
                replicas,
                policy,
                send_rate_per_sec: send_rate,
                send_burst,
                queue,
                files,
                calls: calls.config(),
                presence_debounce,
            };
            let listener = dolphin_edge::listen(listen)
                .with_context(|| format!("failed to listen on {listen}"))?;
            let dev = dev::start(config, listener).await?;
            announce(dev.addr);
            shutdown_signal().await;
            dev.shutdown();
            dev.wait().await
        }
        Command::Token { user, data, ttl_hours } => {
            dolphin_protocol::ids::check_user(&user)?;
            let secret = secrets::jwt_secret(&data)?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
            let token = dolphin_edge::auth::issue(secret.as_bytes(), &user, now, ttl_hours * 3600)?;
            #[allow(clippy::print_stdout)]
            {
                println!("{token}");
            }
            Ok(())
        }
        Command::Chat(args) => chat::run(args).await,
        Command::Bench(BenchCommand::Pairs(args)) => {
            dolphin::bench::pairs::run(args).await?;
            Ok(())
        }
        Command::Bench(BenchCommand::Catchup(args)) => {
            dolphin::bench::catchup::run(args).await?;
            Ok(())
        }
        Command::Bench(BenchCommand::Connections(args)) => {
            dolphin::bench::connections::run(args).await?;
            Ok(())
        }
        Command::Bench(BenchCommand::Fanout(args)) => {
            dolphin::bench::fanout::run(args).await?;
            Ok(())
        }
        Command::Bench(BenchCommand::Sequencer(args)) => {
            dolphin::bench::sequencer::run(args).await?;
            Ok(())
        }
        Command::Cluster { dir, shards, replicas, edges, queue } => {
            init_logging(cli.log_format);
            let binary = std::env::current_exe()?;
            let mut spec = dolphin::local_cluster::ClusterSpec::new(
                dir.clone(),
                binary,
                shards,
                replicas,
                edges,
            );
            spec.queue = queue;
            let mut cluster = dolphin::local_cluster::LocalCluster::start(spec).await?;
            announce_cluster(&cluster, &dir);
            shutdown_signal().await;
            cluster.stop(std::time::Duration::from_secs(10)).await;
            Ok(())
        }
        Command::Sequencer(args) => {
            init_logging(cli.log_format);
            let shutdown = tokio_util::sync::CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                stop.cancel();
            });
            dolphin::sequencer::run(args, shutdown).await
        }
        Command::Edge(args) => {
            init_logging(cli.log_format);
            let shutdown = tokio_util::sync::CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                stop.cancel();
            });
            dolphin::edge::run(args, shutdown).await
        }
    }
}

/// Tells the person who started `dolphin dev` where it is.
#[allow(clippy::print_stdout)]
fn announce(addr: SocketAddr) {
    println!("dolphin dev is running: ws://{addr}/v1/ws (metrics at http://{addr}/metrics)");
}

/// Tells the person who started `dolphin cluster` where it is.
#[allow(clippy::print_stdout)]
fn announce_cluster(cluster: &dolphin::local_cluster::LocalCluster, dir: &std::path::Path) {
    println!("dolphin cluster is running; logs and data in {}", dir.display());
    for addr in cluster.edge_addrs() {
        println!("edge: ws://{addr}/v1/ws");
    }
    for shard in &cluster.topology.shards {
        for replica in &shard.replicas {
            println!(
                "shard {} replica {}: http://{}/admin/status",
                shard.id, replica.id, replica.addr
            );
        }
    }
    println!("tokens: DOLPHIN_JWT_SECRET=$(cat {}/jwt-secret) dolphin token USER", dir.display());
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}
