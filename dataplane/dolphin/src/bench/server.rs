//! The servers a benchmark runs against, started as processes of their own: `dolphin dev`, or
//! Centrifugo with its memory engine. Both are given the same cores, and their CPU time and
//! peak memory are read from `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

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
}

/// The HMAC secret both servers check tokens with.
pub const SECRET: &str = "dolphin-bench-secret-not-for-production";

/// A server process under test.
#[derive(Debug)]
pub struct Server {
    pub target: Target,
    /// `host:port` of its WebSocket endpoint.
    pub addr: String,
    child: Child,
    pid: u32,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server named by `args` and waits until it accepts connections.
    pub async fn start(args: &ServerArgs) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
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
                std::fs::write(&config, centrifugo_config(port).to_string())?;
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
        let mut server = Server { target: args.target, addr, child, pid, _dir: dir };
        server.wait_listening(Duration::from_secs(30)).await?;
        Ok(server)
    }

    async fn wait_listening(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if tokio::net::TcpStream::connect(&self.addr).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
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

    /// CPU seconds the server has used so far (user and system, with its threads).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let pid = self.server_pid()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(") ").map(|(_, rest)| rest).context("odd /proc stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(ticks as f64 / clock_ticks())
    }

    /// Resident memory now, and at its peak, in bytes.
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let pid = self.server_pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
            let kib: u64 = line.split_whitespace().nth(1).context("odd status line")?.parse()?;
            Ok(kib * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// The server's own pid: `taskset` execs it, so the child's pid is the server's.
    fn server_pid(&self) -> anyhow::Result<u32> {
        Ok(self.pid)
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
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
fn centrifugo_config(port: u16) -> serde_json::Value {
    serde_json::json!({
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

/// Pins this process (the load generator) to `cpus`, if given.
pub fn pin_self(cpus: &str) -> anyhow::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid])
        .stdout(Stdio::null())
        .status()
        .context("failed to run taskset")?;
    if !status.success() {
        bail!("taskset could not pin the load generator to cores {cpus}");
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
