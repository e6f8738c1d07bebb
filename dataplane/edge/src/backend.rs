//! Reaching the shards: routing by conversation, finding each shard's leader, and gathering
//! the answers of queries that span shards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dolphin_protocol::ConversationItem;
use dolphin_sequencer::query::{Answer, Query};
use dolphin_sequencer::{Shard, ShardError};
use dolphin_state::{Applied, Command};
use dolphin_topology::{Router, ShardId, Topology};

/// How long a request waits for a shard to have a leader before it is `unavailable`: a few
/// election timeouts, so that a leader change is hidden from clients and a lost quorum is not.
pub const LEADER_WAIT: Duration = Duration::from_secs(3);

/// The way to one shard.
#[derive(Clone, Debug)]
pub enum ShardLink {
    /// Replicas running in this process (`dolphin dev`).
    Local(Vec<Arc<Shard>>),
}

impl ShardLink {
    /// The local replica that leads the shard, waiting up to [`LEADER_WAIT`] for one.
    async fn local_leader(replicas: &[Arc<Shard>]) -> Result<&Arc<Shard>, ShardError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            if let Some(leader) = replicas.iter().find(|r| r.is_leader()) {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                return Err(ShardError::Unavailable("the shard has no leader".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Proposes a command to the shard's leader and waits for its result.
    pub async fn submit(&self, command: Command) -> Result<Applied, ShardError> {
        match self {
            ShardLink::Local(replicas) => {
                let mut command = Some(command);
                let deadline = Instant::now() + LEADER_WAIT;
                loop {
                    let leader = Self::local_leader(replicas).await?;
                    let Some(next) = command.take() else {
                        return Err(ShardError::Unavailable("no command".into()));
                    };
                    match leader.submit(next.clone()).await {
                        // Leadership moved between the check and the proposal; the proposal was
                        // not appended, so proposing again cannot order it twice.
                        Err(ShardError::NotLeader { .. }) if Instant::now() < deadline => {
                            command = Some(next);
                        }
                        other => return other,
                    }
                }
            }
        }
    }

    /// Answers a query at the shard's leader.
    pub async fn query(&self, query: Query) -> Result<Answer, ShardError> {
        match self {
            ShardLink::Local(replicas) => {
                let deadline = Instant::now() + LEADER_WAIT;
                loop {
                    let leader = Self::local_leader(replicas).await?;
                    match leader.read(|kv| query.run(kv)).await {
                        Err(ShardError::NotLeader { .. }) if Instant::now() < deadline => continue,
                        other => return other,
                    }
                }
            }
        }
    }

    /// Whether the shard has a leader now.
    pub fn has_leader(&self) -> bool {
        match self {
            ShardLink::Local(replicas) => replicas.iter().any(|r| r.is_leader()),
        }
    }
}

/// Every shard of the cluster and how to route to them.
#[derive(Clone, Debug)]
pub struct Backend {
    router: Router,
    shards: Vec<(ShardId, ShardLink)>,
}

impl Backend {
    /// A backend over `links`, one per shard of `topology`.
    pub fn new(topology: &Topology, links: Vec<(ShardId, ShardLink)>) -> Self {
        Backend { router: topology.router(), shards: links }
    }

    /// The shard that orders `conv`.
    pub fn link(&self, conv: &str) -> Result<&ShardLink, ShardError> {
        let id = self.router.shard_of(conv);
        self.shards
            .iter()
            .find(|(shard, _)| *shard == id)
            .map(|(_, link)| link)
            .ok_or_else(|| ShardError::Unavailable(format!("shard {id} is not known here")))
    }

    /// Every shard.
    pub fn links(&self) -> impl Iterator<Item = &(ShardId, ShardLink)> {
        self.shards.iter()
    }

    /// Proposes a command to the shard of its conversation.
    pub async fn submit(&self, command: Command) -> Result<Applied, ShardError> {
        let conv = command.conv().unwrap_or_default().to_owned();
        self.link(&conv)?.submit(command).await
    }

    /// Answers a query about one conversation at its shard.
    pub async fn query(&self, conv: &str, query: Query) -> Result<Answer, ShardError> {
        self.link(conv)?.query(query).await
    }

    /// One page of a user's conversations from every shard, merged in conversation id order.
    /// The cursor is the last conversation id of the previous page.
    pub async fn sync(
        &self,
        user: &str,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<(Vec<ConversationItem>, Option<String>), ShardError> {
        let asks = self.shards.iter().map(|(_, link)| {
            let query = Query::Sync { user: user.to_owned(), cursor: cursor.clone(), limit };
            link.query(query)
        });
        let answers = futures_util::future::join_all(asks).await;
        let mut items = Vec::new();
        let mut more = false;
        for answer in answers {
            if let Answer::Conversations { page } = answer? {
                more |= page.more;
                items.extend(page.items);
            }
        }
        items.sort_by(|a, b| a.conv.cmp(&b.conv));
        if items.len() > limit as usize {
            items.truncate(limit as usize);
            more = true;
        }
        let next = if more { items.last().map(|item| item.conv.clone()) } else { None };
        Ok((items, next))
    }

    /// The shards that have no leader now, for readiness.
    pub fn leaderless(&self) -> Vec<ShardId> {
        self.shards.iter().filter(|(_, link)| !link.has_leader()).map(|(id, _)| *id).collect()
    }
}
