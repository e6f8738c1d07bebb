//! A whole cluster as processes on loopback: shards of replicas and edges, each a `dolphin`
//! process of its own. `dolphin cluster` runs one for people without Kubernetes; the fault
//! tests use it to kill and restart single processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dolphin_sequencer::admin::Status;
use dolphin_topology::{DEFAULT_SLOTS, Replica, Topology};
use tokio::process::{Child, Command};

use crate::secrets;

/// The shape of a local cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Folder for the topology, the secret, every replica's data and every process's log.
    pub dir: PathBuf,
    pub shards: u32,
    pub replicas: u32,
    pub edges: u32,
    /// The `dolphin` binary to run.
    pub binary: PathBuf,
    /// Whether replicas serve `/admin/isolate`.
    pub fault_injection: bool,
    /// Extra arguments for every edge.
    pub edge_args: Vec<String>,
    /// Extra arguments for every sequencer replica.
    pub sequencer_args: Vec<String>,
    /// The Redis queue to use; when `None` the cluster runs its own `redis-server` (AOF with
    /// `appendfsync always`) in `dir/redis`.
    pub queue: Option<String>,
}

impl ClusterSpec {
    /// A cluster of the given shape in `dir`, running `binary`, with its own Redis.
    pub fn new(dir: PathBuf, binary: PathBuf, shards: u32, replicas: u32, edges: u32) -> Self {
        ClusterSpec {
            dir,
            shards,
            replicas,
            edges,
            binary,
            fault_injection: false,
            edge_args: Vec::new(),
            sequencer_args: Vec::new(),
            queue: None,
        }
    }
}

/// The cluster's own `redis-server`.
#[derive(Debug)]
struct ManagedRedis {
    addr: String,
    child: Option<Child>,
}

/// A running local cluster. Processes are killed when it is dropped.
#[derive(Debug)]
pub struct LocalCluster {
    pub spec: ClusterSpec,
    pub topology: Topology,
    pub secret: String,
    replicas: BTreeMap<(u32, u64), Child>,
    edges: BTreeMap<u32, (Child, String)>,
    redis: Option<ManagedRedis>,
    http: reqwest::Client,
}

fn free_addr() -> anyhow::Result<String> {
    // Bound and released at once: a small window for another process to take the port, which
    // tests on one machine accept.
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(probe.local_addr()?.to_string())
}

impl LocalCluster {
    /// Writes the topology (or reuses the one in `spec.dir`) and starts every process.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        std::fs::create_dir_all(spec.dir.join("logs"))?;
        let path = spec.dir.join("topology.yaml");
        let topology = if path.exists() {
            Topology::load(&path)?
        } else {
            let mut topology = Topology::even(secrets::random_hex(8), spec.shards, DEFAULT_SLOTS);
            for shard in &mut topology.shards {
                for id in 1..=u64::from(spec.replicas) {
                    shard.replicas.push(Replica { id, addr: free_addr()? });
                }
            }
            std::fs::write(&path, topology.to_yaml())?;
            topology
        };
        let secret =
            secrets::read_or_create(&spec.dir.join("jwt-secret"), || secrets::random_hex(32))?;
        let mut cluster = LocalCluster {
            spec,
            topology,
            secret,
            replicas: BTreeMap::new(),
            edges: BTreeMap::new(),
            redis: None,
            http: reqwest::Client::new(),
        };
        if cluster.spec.queue.is_none() {
            cluster.redis = Some(ManagedRedis { addr: free_addr()?, child: None });
            cluster.start_redis().await?;
        }
        let ids: Vec<(u32, u64)> = cluster
            .topology
            .shards
            .iter()
            .flat_map(|s| s.replicas.iter().map(move |r| (s.id, r.id)))
            .collect();
        for (shard, replica) in ids {
            cluster.start_replica(shard, replica)?;
        }
        for edge in 0..cluster.spec.edges {
            cluster.start_edge(edge, None)?;
        }
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn log(&self, name: &str) -> anyhow::Result<Stdio> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.spec.dir.join("logs").join(format!("{name}.log")))?;
        Ok(Stdio::from(file))
    }

    /// The address of a replica.
    pub fn replica_addr(&self, shard: u32, replica: u64) -> Option<String> {
        let shard = self.topology.shard(shard)?;
        shard.replicas.iter().find(|r| r.id == replica).map(|r| r.addr.clone())
    }

    /// Adds a replica to a shard in the topology (a newer version of the file, naming the
    /// shard's founders if it did not yet) and starts it: not a founder, it waits to be added
    /// by the leader as a learner. Returns its id.
    pub fn add_replica(&mut self, shard: u32) -> anyhow::Result<u64> {
        let addr = free_addr()?;
        let entry =
            self.topology.shards.iter_mut().find(|s| s.id == shard).context("no such shard")?;
        if entry.founders.is_empty() {
            entry.founders = entry.replicas.iter().map(|r| r.id).collect();
        }
        let id = entry.replicas.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        entry.replicas.push(Replica { id, addr });
        self.topology.version += 1;
        std::fs::write(self.spec.dir.join("topology.yaml"), self.topology.to_yaml())?;
        self.spawn_replica(shard, id, &[])?;
        Ok(id)
    }

    /// Starts (or restarts) one replica process on its folder.
    pub fn start_replica(&mut self, shard: u32, replica: u64) -> anyhow::Result<()> {
        self.spawn_replica(shard, replica, &[])
    }

    /// The queue URL every process is given.
    pub fn queue_url(&self) -> String {
        match (&self.spec.queue, &self.redis) {
            (Some(url), _) => url.clone(),
            (None, Some(redis)) => format!("redis://{}", redis.addr),
            (None, None) => String::new(),
        }
    }

    /// Starts (or restarts, on the same folder and port) the cluster's own `redis-server`, and
    /// waits until it answers.
    pub async fn start_redis(&mut self) -> anyhow::Result<()> {
        let log = self.log("redis")?;
        let dir = self.spec.dir.join("redis");
        std::fs::create_dir_all(&dir)?;
        let Some(redis) = &mut self.redis else { bail!("this cluster uses an external Redis") };
        let (host, port) = redis.addr.rsplit_once(':').context("redis address")?;
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", host, "--port", port, "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--save", "", "--dir"])
            .arg(&dir)
            .stdout(log)
            .stderr(Stdio::null())
            .kill_on_drop(true);
        redis.child = Some(command.spawn().context("failed to start redis-server")?);
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = redis.addr.clone();
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            if Instant::now() >= deadline {
                bail!("redis-server on {addr} did not start; see its log");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Kills the cluster's own `redis-server` with SIGKILL.
    pub async fn kill_redis(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.redis.as_mut().and_then(|r| r.child.as_mut()) {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    fn spawn_replica(&mut self, shard: u32, replica: u64, extra: &[&str]) -> anyhow::Result<()> {
        let data = self.spec.dir.join(format!("shard-{shard}")).join(format!("replica-{replica}"));
        let mut command = Command::new(&self.spec.binary);
        command
            .args(["sequencer", "--shard", &shard.to_string(), "--id", &replica.to_string()])
            .arg("--data")
            .arg(&data)
            .arg("--topology")
            .arg(self.spec.dir.join("topology.yaml"));
        command.arg("--queue").arg(self.queue_url());
        if self.spec.fault_injection {
            command.arg("--enable-fault-injection");
        }
        command.args(&self.spec.sequencer_args).args(extra);
        let log = format!("shard-{shard}-replica-{replica}");
        command.stdout(self.log(&log)?).stderr(self.log(&log)?).kill_on_drop(true);
        let child = command.spawn().context("failed to start a sequencer")?;
        self.replicas.insert((shard, replica), child);
        Ok(())
    }

    /// Starts (or restarts) one edge, on `addr` or a free port.
    pub fn start_edge(&mut self, edge: u32, addr: Option<String>) -> anyhow::Result<String> {
        let addr = match addr.or_else(|| self.edges.get(&edge).map(|(_, a)| a.clone())) {
            Some(addr) => addr,
            None => free_addr()?,
        };
        let mut command = Command::new(&self.spec.binary);
        command
            .args(["edge", "--listen", &addr, "--topology"])
            .arg(self.spec.dir.join("topology.yaml"))
            .arg("--queue")
            .arg(self.queue_url())
            .args(&self.spec.edge_args)
            .env(secrets::JWT_SECRET_ENV, &self.secret);
        // Every edge runs on this machine, so one folder serves them all as file storage,
        // unless the caller chose a bucket.
        if !self.spec.edge_args.iter().any(|a| a.starts_with("--files-")) {
            command.arg("--files-dir").arg(self.spec.dir.join("files"));
        }
        let log = format!("edge-{edge}");
        command.stdout(self.log(&log)?).stderr(self.log(&log)?).kill_on_drop(true);
        let child = command.spawn().context("failed to start an edge")?;
        self.edges.insert(edge, (child, addr.clone()));
        Ok(addr)
    }

    /// The WebSocket base URL of an edge.
    pub fn edge_url(&self, edge: u32) -> Option<String> {
        self.edges.get(&edge).map(|(_, addr)| format!("ws://{addr}"))
    }

    /// Every edge's address.
    pub fn edge_addrs(&self) -> Vec<String> {
        self.edges.values().map(|(_, addr)| addr.clone()).collect()
    }

    /// Kills a replica with SIGKILL and waits for it to be gone.
    pub async fn kill_replica(&mut self, shard: u32, replica: u64) -> anyhow::Result<()> {
        if let Some(mut child) = self.replicas.remove(&(shard, replica)) {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Kills an edge with SIGKILL.
    pub async fn kill_edge(&mut self, edge: u32) -> anyhow::Result<()> {
        if let Some((child, addr)) = self.edges.get_mut(&edge) {
            child.start_kill()?;
            child.wait().await?;
            let addr = addr.clone();
            // Keep the address so a restart takes the same port.
            let placeholder = Command::new("true").spawn()?;
            self.edges.insert(edge, (placeholder, addr));
        }
        Ok(())
    }

    /// The pid of every process of the cluster: replicas, edges and its own Redis.
    pub fn pids(&self) -> Vec<u32> {
        let replicas = self.replicas.values();
        let edges = self.edges.values().map(|(child, _)| child);
        let redis = self.redis.iter().filter_map(|r| r.child.as_ref());
        replicas.chain(edges).chain(redis).filter_map(Child::id).collect()
    }

    /// Stops every process with SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let mut children: Vec<Child> = std::mem::take(&mut self.replicas).into_values().collect();
        children.extend(std::mem::take(&mut self.edges).into_values().map(|(c, _)| c));
        let redis = self.redis.as_mut().and_then(|r| r.child.take());
        for child in &children {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for mut child in children {
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        // Redis last, so that nothing loses its queue while stopping.
        if let Some(mut child) = redis {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }

    /// What a replica says of its shard.
    pub async fn status(&self, shard: u32, replica: u64) -> anyhow::Result<Status> {
        let addr = self.replica_addr(shard, replica).context("no such replica")?;
        let response = self
            .http
            .get(format!("http://{addr}/admin/status"))
            .timeout(Duration::from_secs(1))
            .send()
            .await?;
        Ok(response.json().await?)
    }

    /// The replica every live replica of the shard agrees leads it, waiting up to `within`.
    pub async fn leader(&self, shard: u32, within: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            let mut seen = Vec::new();
            for &(s, replica) in self.replicas.keys() {
                if s == shard
                    && let Ok(status) = self.status(shard, replica).await
                {
                    seen.push(status.leader);
                }
            }
            if let Some(Some(leader)) = seen.first()
                && seen.iter().all(|l| *l == Some(*leader))
                && self.replicas.contains_key(&(shard, *leader))
            {
                return Ok(*leader);
            }
            if Instant::now() >= deadline {
                bail!("shard {shard} has no leader that its live replicas agree on: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Posts JSON to a replica's admin API.
    pub async fn admin(
        &self,
        shard: u32,
        replica: u64,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<reqwest::Response> {
        let addr = self.replica_addr(shard, replica).context("no such replica")?;
        Ok(self
            .http
            .post(format!("http://{addr}{path}"))
            .json(&body)
            .timeout(Duration::from_secs(15))
            .send()
            .await?)
    }

    /// Waits until every edge is ready (every shard has a leader it can reach).
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for addr in self.edge_addrs() {
            loop {
                let ready = self
                    .http
                    .get(format!("http://{addr}/readyz"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("edge {addr} is not ready; see the logs in {}", self.spec.dir.display());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// A token for `user`.
    pub fn token(&self, user: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        dolphin_edge::auth::issue(self.secret.as_bytes(), user, now, 24 * 3600).unwrap_or_default()
    }

    /// The folder of a replica.
    pub fn replica_dir(&self, shard: u32, replica: u64) -> PathBuf {
        self.spec.dir.join(format!("shard-{shard}")).join(format!("replica-{replica}"))
    }

    /// The cluster's folder.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }
}
