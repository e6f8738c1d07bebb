//! Reaching the shards: routing by conversation, finding each shard's leader, and gathering
//! the answers of queries that span shards.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dolphin_protocol::ConversationItem;
use dolphin_sequencer::query::{Answer, Query};
pub use dolphin_sequencer::remote::LEADER_WAIT;
use dolphin_sequencer::remote::RemoteShard;
use dolphin_sequencer::{Shard, ShardError};
use dolphin_state::{Applied, Command};
use dolphin_topology::{Router, ShardId, Topology};

/// The way to one shard.
#[derive(Clone, Debug)]
pub enum ShardLink {
    /// Replicas running in this process (`dolphin dev`).
    Local(Vec<Arc<Shard>>),
    /// Replicas in other processes, reached over HTTP.
    Remote(RemoteShard),
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
            ShardLink::Remote(remote) => remote.submit(&command).await,
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
            ShardLink::Remote(remote) => remote.query(&query).await,
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

    /// Whether the shard has a leader that a quorum acknowledged within `within`.
    pub async fn writable(&self, within: Duration) -> bool {
        match self {
            ShardLink::Local(replicas) => replicas.iter().any(|r| r.writable(within)),
            ShardLink::Remote(remote) => remote.writable(within).await,
        }
    }

    /// Whether the shard has a leader now.
    pub async fn has_leader(&self) -> bool {
        match self {
            ShardLink::Local(replicas) => replicas.iter().any(|r| r.is_leader()),
            ShardLink::Remote(remote) => remote.find_leader().await.is_some(),
        }
    }
}

/// The routing table and the links it routes to; replaced as a whole when the topology
/// changes.
#[derive(Clone, Debug)]
struct Routes {
    version: u64,
    router: Router,
    shards: Vec<(ShardId, ShardLink)>,
}

/// How recently a quorum must have acknowledged a shard's leader for the shard to count as
/// writable: a few heartbeats.
pub const QUORUM_WITHIN: Duration = Duration::from_millis(1500);

/// How long a shard may be without a writable leader before sends to it are refused with
/// `unavailable` instead of queued: longer than an election, so a leader change is absorbed
/// by the queue, while a shard that lost its quorum is refused promptly and its inbox does
/// not grow without bound.
pub const WRITE_GRACE: Duration = Duration::from_secs(3);

/// Every shard of the cluster and how to route to them.
#[derive(Debug)]
pub struct Backend {
    routes: RwLock<Arc<Routes>>,
    /// Shards seen without a writable leader, since when.
    unwritable: std::sync::Mutex<std::collections::HashMap<ShardId, Instant>>,
}

impl Backend {
    /// A backend over `links`, one per shard of `topology`.
    pub fn new(topology: &Topology, links: Vec<(ShardId, ShardLink)>) -> Self {
        let routes = Routes { version: topology.version, router: topology.router(), shards: links };
        Backend { routes: RwLock::new(Arc::new(routes)), unwritable: Default::default() }
    }

    /// A backend reaching every shard of `topology` over HTTP.
    pub fn remote(topology: &Topology) -> Self {
        let links = topology
            .shards
            .iter()
            .map(|shard| {
                let addrs = shard.replicas.iter().map(|r| r.addr.clone()).collect();
                (shard.id, ShardLink::Remote(RemoteShard::new(shard.id, addrs)))
            })
            .collect();
        Self::new(topology, links)
    }

    /// Checks every shard once for a writable leader, and records the result for
    /// [`Backend::refuses_writes`].
    pub async fn check_writable(&self) {
        let links = self.links();
        let checks =
            links.iter().map(|(id, link)| async move { (*id, link.writable(QUORUM_WITHIN).await) });
        let results = futures_util::future::join_all(checks).await;
        let now = Instant::now();
        let mut unwritable =
            self.unwritable.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        unwritable.retain(|id, _| links.iter().any(|(shard, _)| shard == id));
        for (id, writable) in results {
            if writable {
                unwritable.remove(&id);
            } else {
                unwritable.entry(id).or_insert(now);
            }
        }
    }

    /// Whether sends to `shard` are refused: it has been without a writable leader for longer
    /// than [`WRITE_GRACE`].
    pub fn refuses_writes(&self, shard: ShardId) -> bool {
        let unwritable = self.unwritable.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        unwritable.get(&shard).is_some_and(|since| since.elapsed() > WRITE_GRACE)
    }

    fn routes(&self) -> Arc<Routes> {
        // Held only to clone the Arc.
        self.routes.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Takes a newer topology: the slot map and replica addresses change for the requests
    /// that follow; shards it adds are returned, to be followed for events. An older or equal
    /// version changes nothing.
    pub fn update(&self, topology: &Topology) -> Vec<(ShardId, ShardLink)> {
        let current = self.routes();
        if topology.version <= current.version {
            return Vec::new();
        }
        let mut shards = current.shards.clone();
        let mut added = Vec::new();
        for shard in &topology.shards {
            let addrs: Vec<String> = shard.replicas.iter().map(|r| r.addr.clone()).collect();
            match shards.iter().find(|(id, _)| *id == shard.id) {
                Some((_, ShardLink::Remote(remote))) => remote.set_replicas(addrs),
                Some((_, ShardLink::Local(_))) => {}
                None => {
                    let link = ShardLink::Remote(RemoteShard::new(shard.id, addrs));
                    shards.push((shard.id, link.clone()));
                    added.push((shard.id, link));
                }
            }
        }
        let routes = Routes { version: topology.version, router: topology.router(), shards };
        *self.routes.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routes);
        added
    }

    /// The version of the topology in use.
    pub fn version(&self) -> u64 {
        self.routes().version
    }

    /// The id of the shard that orders `conv`.
    pub fn shard_of(&self, conv: &str) -> ShardId {
        self.routes().router.shard_of(conv)
    }

    /// The shard that orders `conv`.
    pub fn link(&self, conv: &str) -> Result<ShardLink, ShardError> {
        let routes = self.routes();
        let id = routes.router.shard_of(conv);
        routes
            .shards
            .iter()
            .find(|(shard, _)| *shard == id)
            .map(|(_, link)| link.clone())
            .ok_or_else(|| ShardError::Unavailable(format!("shard {id} is not known here")))
    }

    /// Every shard.
    pub fn links(&self) -> Vec<(ShardId, ShardLink)> {
        self.routes().shards.clone()
    }

    /// Proposes a command to the shard its key routes to.
    pub async fn submit(&self, command: Command) -> Result<Applied, ShardError> {
        let key = command.key().unwrap_or_default();
        self.link(&key)?.submit(command).await
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
        let links = self.links();
        let asks = links.iter().map(|(_, link)| {
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

    /// Whether `user` is a member of a conversation, on any shard, in which a message names
    /// `file`. Every shard is asked at once; one that cannot answer makes the answer unknown
    /// unless another already said yes.
    pub async fn may_read_file(&self, user: &str, file: &str) -> Result<bool, ShardError> {
        let links = self.links();
        let asks = links.iter().map(|(_, link)| {
            link.query(Query::MayReadFile { user: user.to_owned(), file: file.to_owned() })
        });
        let answers = futures_util::future::join_all(asks).await;
        let mut failure = None;
        for answer in answers {
            match answer {
                Ok(Answer::MayReadFile { allowed: true }) => return Ok(true),
                Ok(_) => {}
                Err(error) => failure = Some(error),
            }
        }
        failure.map_or(Ok(false), Err)
    }

    /// The shards that have no leader now, for readiness.
    pub async fn leaderless(&self) -> Vec<ShardId> {
        let links = self.links();
        let checks = links.iter().map(|(id, link)| async move { (*id, link.has_leader().await) });
        let results = futures_util::future::join_all(checks).await;
        results.into_iter().filter(|(_, leader)| !leader).map(|(id, _)| id).collect()
    }
}
