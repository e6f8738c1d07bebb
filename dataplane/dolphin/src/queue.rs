//! Choosing and connecting the queue from the command line.

use std::path::Path;

use anyhow::{Context, bail};
use dolphin_queue::Queue;
use dolphin_queue::embedded::EmbeddedQueue;
use dolphin_queue::redis::{RedisQueue, RedisSettings};

/// Where sends wait for their shard.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct QueueArgs {
    /// `redis://[:password@]host:port` (or `rediss://` for TLS); `embedded` keeps the queue in
    /// the data folder, for `dolphin dev` only.
    #[arg(long = "queue", env = "DOLPHIN_QUEUE_URL")]
    pub url: Option<String>,
    /// The Redis password, when the URL does not carry it.
    #[arg(long = "queue-password", env = "DOLPHIN_QUEUE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Wait until this many Redis replicas have each queued message before `accepted` (WAIT).
    #[arg(long = "queue-wait-replicas", env = "DOLPHIN_QUEUE_WAIT_REPLICAS")]
    pub wait_replicas: Option<u32>,
    /// For `rediss://`: PEM certificate authorities to trust instead of the system's.
    #[arg(long = "queue-ca-file", env = "DOLPHIN_QUEUE_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl QueueArgs {
    /// The Redis URL with the password in it, if a Redis queue is configured.
    fn redis_url(&self) -> anyhow::Result<Option<String>> {
        let Some(raw) = self.url.as_deref().filter(|u| *u != "embedded") else { return Ok(None) };
        let mut url = url::Url::parse(raw).with_context(|| format!("invalid queue URL {raw:?}"))?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            bail!("the queue URL must start with redis:// or rediss://, got {raw:?}");
        }
        if let Some(password) = &self.password
            && url.password().is_none()
        {
            url.set_password(Some(password))
                .ok()
                .context("the queue URL cannot hold a password")?;
        }
        Ok(Some(url.to_string()))
    }

    /// Connects the configured queue; `embedded` (the default when `allow_embedded`) opens
    /// `queue.redb` in `data`.
    pub async fn connect(
        &self,
        epoch: &str,
        shards: u32,
        data: Option<&Path>,
    ) -> anyhow::Result<Queue> {
        match self.redis_url()? {
            Some(url) => {
                let settings = RedisSettings {
                    url,
                    prefix: format!("dolphin:{epoch}"),
                    wait_replicas: self.wait_replicas,
                    ca_file: self.ca_file.clone(),
                };
                Ok(Queue::Redis(RedisQueue::start(settings)?))
            }
            None => {
                let Some(data) = data else {
                    bail!(
                        "set --queue to a redis:// URL: the embedded queue serves one process only"
                    );
                };
                let queue = EmbeddedQueue::open(&data.join("queue.redb"), shards)?;
                Ok(Queue::Embedded(queue))
            }
        }
    }
}
