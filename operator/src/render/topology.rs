//! The topology document and its ConfigMap: the shard map every process reads.

use std::collections::BTreeMap;

use dolphin_topology::{DEFAULT_SLOTS, Replica, Topology};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;

use super::{Component, RenderError, SEQUENCER_PORT, TOPOLOGY_KEY, labels, meta, names};
use crate::crd::ImCluster;

/// A change of the spec that the operator refused, with why, for a condition and an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// A CamelCase reason, as conditions and Events take it.
    pub reason: &'static str,
    pub message: String,
}

/// The topology to write, and the spec changes it could not follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyPlan {
    pub topology: Topology,
    pub refusals: Vec<Refusal>,
}

impl TopologyPlan {
    /// The shards that run.
    pub fn shards(&self) -> u32 {
        self.topology.shards.len() as u32
    }

    /// The replicas of each shard that run.
    pub fn replicas(&self) -> u32 {
        self.topology.shards.first().map_or(0, |s| s.replicas.len() as u32)
    }
}

/// The cluster's epoch: derived from the ImCluster's uid, so that it is stable for the life of
/// the resource and a new resource of the same name starts a new epoch (clients then know
/// that their positions belong to other data).
pub fn epoch(cluster: &ImCluster) -> Result<String, RenderError> {
    let uid = cluster.uid().ok_or(RenderError::Missing { kind: "the topology", missing: "uid" })?;
    Ok(uid.chars().filter(char::is_ascii_hexdigit).take(16).collect())
}

/// The stable DNS name and port of a replica: its pod in the shard's headless Service.
pub fn replica_addr(cluster: &ImCluster, ns: &str, shard: u32, replica: u64) -> String {
    let set = names::shard(cluster, shard);
    format!("{set}-{replica}.{set}.{ns}.svc:{SEQUENCER_PORT}")
}

/// Decides the topology from the spec and the document already written, if any.
///
/// A running cluster's slot map and sizes are kept: the data plane cannot move slots between
/// shards (conversations would change shard without their messages) and the operator does not
/// yet change the membership of running shards, so such changes are refused with a reason
/// rather than applied half-way. The version grows only when the document changes, so a
/// reconcile of an unchanged cluster writes nothing.
pub fn plan(cluster: &ImCluster, existing: Option<&Topology>) -> Result<TopologyPlan, RenderError> {
    let ns = super::namespace(cluster)?;
    let spec = &cluster.spec.sequencer;
    let mut refusals = Vec::new();

    let mut topology = match existing {
        Some(existing) => existing.clone(),
        None => Topology::even(epoch(cluster)?, spec.shards, DEFAULT_SLOTS),
    };
    let running_shards = topology.shards.len() as u32;
    let running_replicas = match existing {
        Some(existing) => {
            existing.shards.first().map_or(spec.replicas, |s| s.replicas.len() as u32)
        }
        None => spec.replicas,
    };
    if spec.shards > running_shards {
        refusals.push(Refusal {
            reason: "ShardsChangeUnsupported",
            message: format!(
                "sequencer.shards is {} but the cluster runs {running_shards}: the data plane \
                 cannot move slots between shards yet, so the cluster keeps {running_shards} \
                 shards",
                spec.shards
            ),
        });
    }
    // Growing adds replicas that wait to be added by their shard's leader (as learners, then
    // voters: see `membership`); the ones that formed the shard stay its founders. Shrinking
    // would remove voters and is refused.
    let replicas = if spec.replicas < running_replicas {
        refusals.push(Refusal {
            reason: "ReplicasShrinkUnsupported",
            message: format!(
                "sequencer.replicas is {} but the shards run {running_replicas}: the operator \
                 does not remove replicas from running shards, so they keep \
                 {running_replicas} replicas",
                spec.replicas
            ),
        });
        running_replicas
    } else {
        spec.replicas
    };

    for shard in &mut topology.shards {
        if replicas > running_replicas && shard.founders.is_empty() {
            shard.founders = (1..=u64::from(running_replicas)).collect();
        }
        shard.replicas = (1..=u64::from(replicas))
            .map(|id| Replica { id, addr: replica_addr(cluster, &ns, shard.id, id) })
            .collect();
    }
    if let Some(existing) = existing {
        topology.version = existing.version;
        if &topology != existing {
            topology.version = existing.version + 1;
        }
    }
    Ok(TopologyPlan { topology, refusals })
}

/// The ConfigMap holding the topology document under `topology.yaml`.
pub fn config_map(cluster: &ImCluster, topology: &Topology) -> Result<ConfigMap, RenderError> {
    Ok(ConfigMap {
        metadata: meta(cluster, names::topology(cluster), labels(cluster, Component::Topology))?,
        data: Some(BTreeMap::from([(TOPOLOGY_KEY.to_owned(), topology.to_yaml())])),
        ..ConfigMap::default()
    })
}

/// The topology in a ConfigMap written before, if it holds one.
pub fn read(config_map: &ConfigMap) -> Option<Result<Topology, dolphin_topology::TopologyError>> {
    let text = config_map.data.as_ref()?.get(TOPOLOGY_KEY)?;
    Some(Topology::from_yaml(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn a_new_cluster_gets_an_even_map_with_stable_pod_addresses() {
        let cluster = fixtures::standard();
        let plan = plan(&cluster, None).unwrap();
        assert!(plan.refusals.is_empty());
        let t = &plan.topology;
        t.validate().unwrap();
        assert_eq!(t.version, 1);
        assert_eq!(t.epoch, "0b3c5d7e11112222");
        assert_eq!(t.slots, DEFAULT_SLOTS);
        assert_eq!(t.shards.len(), 3);
        assert_eq!(t.shards[2].replicas.len(), 3);
        assert_eq!(t.shards[2].replicas[0].id, 1);
        assert_eq!(t.shards[2].replicas[0].addr, "chat-shard-2-1.chat-shard-2.team.svc:7000");
    }

    #[test]
    fn an_unchanged_cluster_keeps_the_version() {
        let cluster = fixtures::standard();
        let first = plan(&cluster, None).unwrap().topology;
        let again = plan(&cluster, Some(&first)).unwrap();
        assert_eq!(again.topology, first);
        assert!(again.refusals.is_empty());
    }

    #[test]
    fn a_changed_address_raises_the_version() {
        let cluster = fixtures::standard();
        let mut old = plan(&cluster, None).unwrap().topology;
        old.version = 7;
        old.shards[1].replicas[0].addr = "10.0.0.1:7000".into();
        let next = plan(&cluster, Some(&old)).unwrap().topology;
        assert_eq!(next.version, 8);
        assert_eq!(next.shards[1].replicas[0].addr, "chat-shard-1-1.chat-shard-1.team.svc:7000");
    }

    #[test]
    fn more_shards_are_refused_and_the_running_map_is_kept() {
        let mut cluster = fixtures::standard();
        let running = plan(&cluster, None).unwrap().topology;
        cluster.spec.sequencer.shards = 5;
        let next = plan(&cluster, Some(&running)).unwrap();
        assert_eq!(next.topology, running);
        assert_eq!(next.refusals.len(), 1);
        assert_eq!(next.refusals[0].reason, "ShardsChangeUnsupported");
        assert!(next.refusals[0].message.contains("keeps 3 shards"), "{:?}", next.refusals);
    }

    #[test]
    fn more_replicas_are_listed_with_the_first_ones_as_founders() {
        let mut cluster = fixtures::standard();
        let running = plan(&cluster, None).unwrap().topology;
        assert!(running.shards.iter().all(|s| s.founders.is_empty()));
        cluster.spec.sequencer.replicas = 5;
        let next = plan(&cluster, Some(&running)).unwrap();
        assert!(next.refusals.is_empty(), "{:?}", next.refusals);
        assert_eq!(next.replicas(), 5);
        assert_eq!(next.topology.version, running.version + 1);
        for shard in &next.topology.shards {
            assert_eq!(shard.founders, [1, 2, 3]);
            assert!(shard.bootstrap_members(4).is_empty(), "added replicas wait to be added");
        }
        // Founders stay what they were once the cluster runs five.
        let again = plan(&cluster, Some(&next.topology)).unwrap();
        assert_eq!(again.topology, next.topology);
    }

    #[test]
    fn fewer_replicas_are_refused_and_the_running_count_is_kept() {
        let mut cluster = fixtures::standard();
        let running = plan(&cluster, None).unwrap().topology;
        cluster.spec.sequencer.replicas = 1;
        let next = plan(&cluster, Some(&running)).unwrap();
        assert_eq!(next.replicas(), 3);
        assert_eq!(next.refusals[0].reason, "ReplicasShrinkUnsupported");
    }

    #[test]
    fn the_config_map_holds_the_document_the_processes_parse() {
        let cluster = fixtures::standard();
        let topology = plan(&cluster, None).unwrap().topology;
        let cm = config_map(&cluster, &topology).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("chat-topology"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("team"));
        let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("ImCluster", Some(true)));
        assert_eq!(read(&cm).unwrap().unwrap(), topology);
        let labels = cm.metadata.labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "dolphin-operator");
        assert_eq!(labels["app.kubernetes.io/component"], "topology");
    }

    #[test]
    fn a_hand_edited_document_that_does_not_parse_is_reported() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([(TOPOLOGY_KEY.to_owned(), "version: [".to_owned())])),
            ..ConfigMap::default()
        };
        assert!(read(&cm).unwrap().is_err());
    }
}
