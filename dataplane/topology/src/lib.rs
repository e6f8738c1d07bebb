//! The topology document: the slot map from conversations to shards, and the addresses of each
//! shard's replicas. The operator writes it into a ConfigMap; `dolphin dev` builds one in
//! memory; `dolphin sequencer` and `dolphin edge` read it from a YAML file.
//!
//! A conversation id hashes (CRC-32, IEEE) to one of a fixed number of slots, and each shard
//! owns ranges of slots. The hash and the slot count never change for a cluster's life, so a
//! conversation stays on its shard until the map moves its slot.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The number of slots of a new cluster: enough for 256 shards of 16 slots each.
pub const DEFAULT_SLOTS: u32 = 4096;

/// The id of a shard, its index in the map.
pub type ShardId = u32;

/// The id of a replica within its shard; also its Raft node id.
pub type ReplicaId = u64;

/// Why a topology document was refused.
#[derive(Debug, Error)]
pub enum TopologyError {
    #[error("failed to read topology file {path}")]
    Read { path: String, source: std::io::Error },
    #[error("failed to parse topology YAML")]
    Parse(#[from] serde_saphyr::Error),
    #[error("invalid topology: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// The whole topology of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Grows with every change, so a process can tell a newer document from an older one.
    pub version: u64,
    /// Names the cluster's data; reported to clients as the `epoch` of `hello`.
    pub epoch: String,
    /// The number of slots conversations hash into. Fixed for the cluster's life.
    pub slots: u32,
    pub shards: Vec<Shard>,
}

/// One shard: a Raft group ordering the conversations of its slots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub id: ShardId,
    /// Inclusive ranges `[first, last]` of the slots this shard owns.
    pub slots: Vec<[u32; 2]>,
    #[serde(default)]
    pub replicas: Vec<Replica>,
    /// The replicas that formed the shard, when replicas were added since: only these
    /// bootstrap a fresh shard (with themselves as its first members); a later one waits for
    /// the leader to add it. Empty: every listed replica is a founder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub founders: Vec<ReplicaId>,
}

impl Shard {
    /// The first membership a replica `me` of this shard proposes when it finds its folder
    /// fresh: the founders (every replica, unless founders are named), or nothing when `me`
    /// is not one of them.
    pub fn bootstrap_members(&self, me: ReplicaId) -> Vec<&Replica> {
        let founder = |id: ReplicaId| self.founders.is_empty() || self.founders.contains(&id);
        if !founder(me) {
            return Vec::new();
        }
        self.replicas.iter().filter(|r| founder(r.id)).collect()
    }
}

/// One replica of a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub id: ReplicaId,
    /// `host:port` of the replica's HTTP server (Raft, reads, admin).
    pub addr: String,
}

impl Topology {
    /// A topology of `shards` shards splitting `slots` slots into even contiguous ranges,
    /// without replica addresses.
    pub fn even(epoch: impl Into<String>, shards: u32, slots: u32) -> Self {
        let shards = shards.max(1);
        let per = slots / shards;
        let extra = slots % shards;
        let mut first = 0;
        let shards = (0..shards)
            .map(|id| {
                let len = per + u32::from(id < extra);
                let range = [first, first + len - 1];
                first += len;
                Shard { id, slots: vec![range], replicas: Vec::new(), founders: Vec::new() }
            })
            .collect();
        Topology { version: 1, epoch: epoch.into(), slots, shards }
    }

    /// Parses and validates a YAML document.
    pub fn from_yaml(text: &str) -> Result<Self, TopologyError> {
        let topology: Topology = serde_saphyr::from_str(text)?;
        topology.validate()?;
        Ok(topology)
    }

    /// Reads, parses and validates a YAML file.
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TopologyError::Read { path: path.display().to_string(), source })?;
        Self::from_yaml(&text)
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }

    /// Checks that every slot belongs to exactly one shard and that ids are unique, reporting
    /// every problem at once.
    pub fn validate(&self) -> Result<(), TopologyError> {
        let mut problems = Vec::new();
        if self.slots == 0 {
            problems.push("slots must be at least 1".to_owned());
        }
        if self.shards.is_empty() {
            problems.push("at least one shard is needed".to_owned());
        }
        let mut owner = vec![None::<ShardId>; self.slots as usize];
        let mut ids = BTreeSet::new();
        for shard in &self.shards {
            if !ids.insert(shard.id) {
                problems.push(format!("shard {} appears twice", shard.id));
            }
            let mut replica_ids = BTreeSet::new();
            for replica in &shard.replicas {
                if !replica_ids.insert(replica.id) {
                    problems
                        .push(format!("shard {}: replica {} appears twice", shard.id, replica.id));
                }
                if replica.id == 0 {
                    problems.push(format!("shard {}: replica ids start at 1", shard.id));
                }
            }
            for &[first, last] in &shard.slots {
                if first > last || last >= self.slots {
                    problems.push(format!(
                        "shard {}: slot range [{first}, {last}] is outside 0..{}",
                        shard.id, self.slots
                    ));
                    continue;
                }
                for slot in first..=last {
                    if let Some(other) = owner[slot as usize].replace(shard.id) {
                        problems.push(format!(
                            "slot {slot} belongs to both shard {other} and shard {}",
                            shard.id
                        ));
                        break;
                    }
                }
            }
        }
        if let Some(slot) = owner.iter().position(Option::is_none)
            && self.slots > 0
        {
            problems.push(format!("slot {slot} belongs to no shard"));
        }
        if problems.is_empty() { Ok(()) } else { Err(TopologyError::Invalid(problems)) }
    }

    /// A lookup table from slot to shard, for routing. The topology must be valid.
    pub fn router(&self) -> Router {
        let mut table = vec![0; self.slots as usize];
        for shard in &self.shards {
            for &[first, last] in &shard.slots {
                for slot in first..=last.min(self.slots.saturating_sub(1)) {
                    table[slot as usize] = shard.id;
                }
            }
        }
        Router { table }
    }

    /// The shard with this id.
    pub fn shard(&self, id: ShardId) -> Option<&Shard> {
        self.shards.iter().find(|shard| shard.id == id)
    }
}

/// Routes conversation ids to shards in constant time.
#[derive(Clone, Debug)]
pub struct Router {
    table: Vec<ShardId>,
}

impl Router {
    /// The shard that orders `conv`.
    pub fn shard_of(&self, conv: &str) -> ShardId {
        self.table[slot_of(conv, self.table.len() as u32) as usize]
    }
}

/// The slot of a conversation id among `slots` slots.
pub fn slot_of(conv: &str, slots: u32) -> u32 {
    crc32fast::hash(conv.as_bytes()) % slots.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_founders_bootstrap_and_with_founders_alone() {
        let mut shard = Topology::even("e", 1, DEFAULT_SLOTS).shards.remove(0);
        shard.replicas = (1..=5).map(|id| Replica { id, addr: format!("r{id}:7000") }).collect();
        let ids = |members: Vec<&Replica>| members.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(shard.bootstrap_members(4)), [1, 2, 3, 4, 5], "no founders: everyone");
        shard.founders = vec![1, 2, 3];
        assert_eq!(ids(shard.bootstrap_members(2)), [1, 2, 3]);
        assert!(shard.bootstrap_members(4).is_empty(), "an added replica waits to be added");
        let mut topology = Topology::even("e", 1, DEFAULT_SLOTS);
        topology.shards[0] = shard;
        assert_eq!(Topology::from_yaml(&topology.to_yaml()).unwrap(), topology);
    }

    #[test]
    fn even_maps_cover_every_slot_once() {
        for shards in [1, 2, 3, 7, 256] {
            let topology = Topology::even("e", shards, DEFAULT_SLOTS);
            topology.validate().unwrap();
            assert_eq!(topology.shards.len(), shards as usize);
        }
    }

    #[test]
    fn the_slot_hash_is_stable() {
        // These values are part of the cluster's on-disk contract: a conversation must never
        // move because the hash changed.
        assert_eq!(slot_of("d:alice:bob", DEFAULT_SLOTS), crc32fast::hash(b"d:alice:bob") % 4096);
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn routing_follows_the_slot_ranges() {
        let topology = Topology::even("e", 2, 4);
        let router = topology.router();
        for conv in ["d:a:b", "g:1", "g:2", "g:3", "g:4"] {
            let expected = if slot_of(conv, 4) < 2 { 0 } else { 1 };
            assert_eq!(router.shard_of(conv), expected, "{conv}");
        }
    }

    #[test]
    fn yaml_round_trips() {
        let mut topology = Topology::even("epoch-1", 2, 16);
        topology.shards[0].replicas.push(Replica { id: 1, addr: "127.0.0.1:7001".into() });
        let yaml = topology.to_yaml();
        assert_eq!(Topology::from_yaml(&yaml).unwrap(), topology);
    }

    #[test]
    fn invalid_maps_report_every_problem() {
        let yaml = "version: 1\nepoch: e\nslots: 8\nshards:\n\
                    - {id: 0, slots: [[0, 4]], replicas: [{id: 1, addr: a}, {id: 1, addr: b}]}\n\
                    - {id: 0, slots: [[4, 6]]}\n";
        let err = Topology::from_yaml(yaml).unwrap_err().to_string();
        assert!(err.contains("shard 0 appears twice"), "{err}");
        assert!(err.contains("replica 1 appears twice"), "{err}");
        assert!(err.contains("slot 4 belongs to both"), "{err}");
        assert!(err.contains("belongs to no shard"), "{err}");
    }
}
