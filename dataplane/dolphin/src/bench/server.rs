//! The servers a benchmark runs against, started as processes of their own: `dolphin dev` or a
//! Dolphin process cluster (shards of three replicas, an edge, Redis), and Centrifugo with its
//! memory or Redis engine. All are given the same cores, and the CPU time and peak memory of
//! every process of the server (Redis included) are read from `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::local_cluster::{ClusterSpec, LocalCluster};

/// Which server a benchmark measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// `dolphin dev`: everything in one process, its queue and log fsynced on the local disk.
    Dolphin,
    /// Centrifugo v6 with its memory engine, history on for the benchmark's channel.
    Centrifugo,
}

/// Where and how the server runs.
#[derive(Clone, Debug, clap::Args)]
pub struct ServerArgs {
    /// The server to measure.
    #[arg(long, value_enum, default_value = "dolphin")]
    pub target: Target,
    /// The `centrifugo` binary (e2e/bench/build-centrifugo.sh builds it).
    #[arg(long, env = "CENTRIFUGO_BIN", default_value = "centrifugo")]
    pub centrifugo: PathBuf,
    /// Cores the server may use (`taskset -c` syntax); empty for no pinning. The load
    /// generator is pinned to the other cores.
    #[arg(long, default_value = "1")]
    pub server_cpus: String,
    /// Cores of the load generator; empty for no pinning.
    #[arg(long, default_value = "0")]
    pub client_cpus: String,
    /// How Dolphin runs.
    #[arg(long, value_enum, default_value = "dev")]
    pub dolphin_setup: DolphinSetup,
    /// Centrifugo's engine.
    #[arg(long, value_enum, default_value = "memory")]
    pub centrifugo_engine: CentrifugoEngine,
}

/// How Dolphin runs in a benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DolphinSetup {
    /// `dolphin dev`: one process, its queue and log fsynced on the local disk.
    Dev,
    /// Processes: two shards of three replicas, one edge, and Redis (AOF, fsync always) as
    /// the queue.
    Cluster,
}

/// Centrifugo's engine in a benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CentrifugoEngine {
    /// History and pub/sub in the process.
    Memory,
    /// History and pub/sub in Redis, run with the same settings as Dolphin's (AOF, fsync
    /// always), so that both keep what they accepted across a Redis restart.
    Redis,
}

impl ServerArgs {
    /// The setup of the target, as results name it: `dev` or `cluster` for Dolphin, `memory`
    /// or `redis` for Centrifugo.
    pub fn setup(&self) -> &'static str {
        match (self.target, self.dolphin_setup, self.centrifugo_engine) {
            (Target::Dolphin, DolphinSetup::Dev, _) => "dev",
            (Target::Dolphin, DolphinSetup::Cluster, _) => "cluster",
            (Target::Centrifugo, _, CentrifugoEngine::Memory) => "memory",
            (Target::Centrifugo, _, CentrifugoEngine::Redis) => "redis",
        }
    }
}

/// Shards of a benchmarked Dolphin cluster; two, so that sends cross shards as in production.
const CLUSTER_SHARDS: u32 = 2;

/// Replicas per shard of a benchmarked Dolphin cluster.
const CLUSTER_REPLICAS: u32 = 3;

/// The HMAC secret both servers check tokens with.
pub const SECRET: &str = "dolphin-bench-secret-not-for-production";

/// The processes of a server under test.
#[derive(Debug)]
enum Processes {
    /// One server process, with the Redis it uses, if any.
    One { child: Child, pid: u32, redis: Option<Child> },
    /// A Dolphin cluster: replicas, edge and Redis.
    Cluster(LocalCluster),
}

/// A server under test.
#[derive(Debug)]
pub struct Server {
    pub target: Target,
    /// `host:port` of its WebSocket endpoint.
    pub addr: String,
    processes: Processes,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server named by `args` and waits until it accepts connections.
    pub async fn start(args: &ServerArgs) -> anyhow::Result<Server> {
        if args.target == Target::Dolphin && args.dolphin_setup == DolphinSetup::Cluster {
            return Self::start_cluster(args).await;
        }
        let dir = tempfile::tempdir()?;
        let redis = match (args.target, args.centrifugo_engine) {
            (Target::Centrifugo, CentrifugoEngine::Redis) => {
                Some(start_redis(dir.path(), &args.server_cpus).await?)
            }
            _ => None,
        };
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let (program, program_args): (PathBuf, Vec<String>) = match args.target {
            Target::Dolphin => {
                let data = dir.path().join("data");
                (
                    std::env::current_exe()?,
                    vec![
                        "dev".into(),
                        "--listen".into(),
                        addr.clone(),
                        "--data".into(),
                        data.display().to_string(),
                        // The benchmark measures delivery, not the per-user send limit.
                        "--send-rate".into(),
                        "1000000".into(),
                        "--send-burst".into(),
                        "1000000".into(),
                    ],
                )
            }
            Target::Centrifugo => {
                if !check_binary(&args.centrifugo) {
                    bail!(
                        "no centrifugo binary at {}: build it with e2e/bench/build-centrifugo.sh \
                         and pass --centrifugo or CENTRIFUGO_BIN",
                        args.centrifugo.display()
                    );
                }
                let config = dir.path().join("config.json");
                let redis_addr = redis.as_ref().map(|(_, addr)| addr.as_str());
                std::fs::write(&config, centrifugo_config(port, redis_addr).to_string())?;
                (args.centrifugo.clone(), vec!["--config".into(), config.display().to_string()])
            }
        };
        let mut command = if args.server_cpus.is_empty() {
            Command::new(&program)
        } else {
            let mut taskset = Command::new("taskset");
            taskset.arg("-c").arg(&args.server_cpus).arg(&program);
            taskset
        };
        command
            .args(&program_args)
            .env("DOLPHIN_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("server.log"))?)
            .stderr(std::fs::File::create(dir.path().join("server.err"))?)
            .kill_on_drop(true);
        let child =
            command.spawn().with_context(|| format!("failed to start {}", program.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let redis = redis.map(|(child, _)| child);
        let processes = Processes::One { child, pid, redis };
        let mut server = Server { target: args.target, addr, processes, _dir: dir };
        server.wait_listening(Duration::from_secs(30)).await?;
        Ok(server)
    }

    /// Starts a Dolphin process cluster and pins every process of it to the server's cores.
    async fn start_cluster(args: &ServerArgs) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        // The cluster keeps the secret it finds in its folder: the one tokens are signed with.
        std::fs::write(dir.path().join("jwt-secret"), SECRET)?;
        let binary = std::env::current_exe()?;
        let mut spec =
            ClusterSpec::new(dir.path().to_path_buf(), binary, CLUSTER_SHARDS, CLUSTER_REPLICAS, 1);
        // The benchmark measures delivery, not the per-user send limit.
        spec.edge_args =
            ["--send-rate", "1000000", "--send-burst", "1000000"].map(String::from).into();
        let cluster = LocalCluster::start(spec).await?;
        for pid in cluster.pids() {
            pin(pid, &args.server_cpus)?;
        }
        let addr = cluster.edge_addrs().into_iter().next().context("the cluster has no edge")?;
        let processes = Processes::Cluster(cluster);
        Ok(Server { target: args.target, addr, processes, _dir: dir })
    }

    fn pids(&self) -> Vec<u32> {
        match &self.processes {
            Processes::One { pid, redis, .. } => {
                std::iter::once(*pid).chain(redis.as_ref().and_then(Child::id)).collect()
            }
            Processes::Cluster(cluster) => cluster.pids(),
        }
    }

    async fn wait_listening(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if tokio::net::TcpStream::connect(&self.addr).await.is_ok() {
                return Ok(());
            }
            let Processes::One { child, .. } = &mut self.processes else { return Ok(()) };
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(self._dir.path().join("server.err"))
                    .unwrap_or_default();
                bail!("the server exited with {status} before listening:\n{log}");
            }
            if Instant::now() >= deadline {
                bail!("the server did not listen on {} within {within:?}", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A token for `user`, valid for a day.
    pub fn token(&self, user: &str) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        Ok(dolphin_edge::auth::issue(SECRET.as_bytes(), user, now, 24 * 3600)?)
    }

    /// The WebSocket URL for `user`.
    pub fn url(&self, user: &str) -> anyhow::Result<String> {
        let token = self.token(user)?;
        Ok(match self.target {
            Target::Dolphin => format!("ws://{}/v1/ws?token={token}&device=bench", self.addr),
            // Centrifugo takes its token in the connect command; see `Protocol`.
            Target::Centrifugo => format!("ws://{}/connection/websocket#{token}", self.addr),
        })
    }

    /// CPU seconds the server has used so far (user and system, with its threads), summed
    /// over its processes.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let mut ticks = 0;
        for pid in self.pids() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = stat.rsplit_once(") ").map(|(_, rest)| rest).context("odd /proc stat")?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            ticks += fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        }
        Ok(ticks as f64 / clock_ticks())
    }

    /// Resident memory now, and at its peak, in bytes, summed over its processes (the peaks
    /// of different processes may not coincide: an upper bound of the whole's peak).
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let (mut now, mut peak) = (0, 0);
        for pid in self.pids() {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            let field = |name: &str| -> anyhow::Result<u64> {
                let line = status
                    .lines()
                    .find(|l| l.starts_with(name))
                    .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
                let kib: u64 =
                    line.split_whitespace().nth(1).context("odd status line")?.parse()?;
                Ok(kib * 1024)
            };
            now += field("VmRSS:")?;
            peak += field("VmHWM:")?;
        }
        Ok((now, peak))
    }

    /// Stops the server.
    pub async fn stop(self) {
        match self.processes {
            Processes::One { mut child, redis, .. } => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                if let Some(mut redis) = redis {
                    let _ = redis.start_kill();
                    let _ = redis.wait().await;
                }
            }
            Processes::Cluster(mut cluster) => cluster.stop(Duration::from_secs(5)).await,
        }
    }
}

fn clock_ticks() -> f64 {
    // Linux reports /proc CPU times in USER_HZ, 100 on every architecture it runs on.
    100.0
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Centrifugo's configuration for the benchmark: tokens signed with [`SECRET`], clients that
/// may subscribe and publish to channels without a namespace, history so that publications
/// carry offsets and clients may recover what they missed (as an IM client needs), the memory
/// engine.
fn centrifugo_config(port: u16, redis: Option<&str>) -> serde_json::Value {
    let engine = match redis {
        Some(addr) => serde_json::json!({ "type": "redis", "redis": { "address": addr } }),
        None => serde_json::json!({ "type": "memory" }),
    };
    serde_json::json!({
        "engine": engine,
        "http_server": { "address": "127.0.0.1", "port": port },
        "log": { "level": "error" },
        "client": {
            "token": { "hmac_secret_key": SECRET },
            "allowed_origins": ["*"],
        },
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_client": true,
                "allow_publish_for_subscriber": true,
                "allow_publish_for_client": true,
                "history_size": 1000,
                "history_ttl": "300s",
                "force_recovery": false,
                "allow_recovery": true,
                "allow_history_for_subscriber": true,
            }
        }
    })
}

/// Starts a `redis-server` in `dir` with the settings of a Dolphin cluster's own Redis (AOF,
/// fsync always), pinned to `cpus`; returns it and its address.
async fn start_redis(dir: &Path, cpus: &str) -> anyhow::Result<(Child, String)> {
    let port = free_port()?.to_string();
    let mut command = Command::new("redis-server");
    command
        .args(["--bind", "127.0.0.1", "--port", &port, "--appendonly", "yes"])
        .args(["--appendfsync", "always", "--save", "", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let child = command.spawn().context("failed to start redis-server")?;
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        if Instant::now() >= deadline {
            bail!("redis-server on {addr} did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(pid) = child.id() {
        pin(pid, cpus)?;
    }
    Ok((child, addr))
}

/// Pins this process (the load generator) to `cpus`, if given.
pub fn pin_self(cpus: &str) -> anyhow::Result<()> {
    pin(std::process::id(), cpus)
}

/// Pins every thread of process `pid` to `cpus`, if given.
fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    let pid = pid.to_string();
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid])
        .stdout(Stdio::null())
        .status()
        .context("failed to run taskset")?;
    if !status.success() {
        bail!("taskset could not pin process {pid} to cores {cpus}");
    }
    Ok(())
}

/// Whether `path` exists as a file, for a clear error before starting.
fn check_binary(path: &Path) -> bool {
    path.is_file() || which(path)
}

fn which(name: &Path) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}
