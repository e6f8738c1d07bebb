//! The status of an ImCluster, decided from what was observed: a pure function, so every
//! condition and its reason is unit-tested.
//!
//! - `Ready` is True when the cluster can take and deliver messages: every shard has a
//!   majority of ready replicas, at least one edge is ready, and the queue is ready. A replica
//!   is ready only once its shard has a leader (its `/readyz`), so a ready majority implies a
//!   leader even where the operator cannot reach the admin API to name it.
//! - `Progressing` is True while anything runs fewer ready pods than asked for.
//! - `Degraded` is True while a part of the spec is refused or cannot be met (a change the
//!   data plane does not support, a Secret that does not exist).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{EdgeStatus, ImClusterStatus, ShardStatus};
use crate::render::shard::quorum;
use crate::render::topology::Refusal;

/// What the operator saw of one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardSeen {
    pub id: u32,
    pub replicas: u32,
    pub ready_replicas: u32,
    /// Replicas whose pod runs the StatefulSet's latest template.
    pub updated_replicas: u32,
    pub leader: Option<u64>,
}

/// What the operator saw of the whole cluster in one reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub shards: Vec<ShardSeen>,
    pub edge_replicas: u32,
    pub edge_ready: u32,
    /// `None` for an external Redis, which the operator does not watch.
    pub redis_ready: Option<bool>,
    pub endpoint: Option<String>,
    pub problems: Vec<Refusal>,
}

/// The condition types, in the order they are listed.
pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// The status to report for `generation` given what was seen. Conditions whose status did not
/// change keep their `lastTransitionTime`, so an unchanged cluster yields an equal status
/// (and the operator writes nothing).
pub fn compute(
    generation: Option<i64>,
    seen: &Seen,
    previous: Option<&ImClusterStatus>,
    now: &Time,
) -> ImClusterStatus {
    let mut not_serving = Vec::new();
    let mut below = Vec::new();
    for shard in &seen.shards {
        if shard.ready_replicas < quorum(shard.replicas) {
            not_serving.push(format!(
                "shard {} has {} of {} replicas ready, below its majority",
                shard.id, shard.ready_replicas, shard.replicas
            ));
        }
        if shard.ready_replicas < shard.replicas {
            below.push(format!(
                "shard {}: {} of {} replicas ready",
                shard.id, shard.ready_replicas, shard.replicas
            ));
        } else if shard.updated_replicas < shard.replicas {
            below.push(format!(
                "shard {}: {} of {} replicas run the latest template",
                shard.id, shard.updated_replicas, shard.replicas
            ));
        }
    }
    if seen.edge_ready == 0 {
        not_serving.push("no edge is ready".to_owned());
    }
    if seen.edge_ready < seen.edge_replicas {
        below.push(format!("edge: {} of {} ready", seen.edge_ready, seen.edge_replicas));
    }
    if seen.redis_ready == Some(false) {
        not_serving.push("the managed Redis is not ready".to_owned());
        below.push("redis: 0 of 1 ready".to_owned());
    }

    let ready = if not_serving.is_empty() {
        (true, "Serving", "every shard has a ready majority, edges and queue are ready".to_owned())
    } else {
        (false, "NotServing", not_serving.join("; "))
    };
    let progressing = if below.is_empty() {
        (false, "Stable", "every pod asked for is ready".to_owned())
    } else {
        (true, "RollingOut", below.join("; "))
    };
    let degraded = match seen.problems.first() {
        None => (false, "AsSpecified", "the cluster runs as its spec asks".to_owned()),
        Some(first) => (
            true,
            first.reason,
            seen.problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "),
        ),
    };

    let old = previous.map(|p| p.conditions.as_slice()).unwrap_or_default();
    let conditions = [(READY, ready), (PROGRESSING, progressing), (DEGRADED, degraded)]
        .into_iter()
        .map(|(type_, (status, reason, message))| {
            condition(old, type_, status, reason, message, generation, now)
        })
        .collect();

    ImClusterStatus {
        observed_generation: generation,
        conditions,
        shards: seen
            .shards
            .iter()
            .map(|s| ShardStatus {
                id: s.id,
                replicas: s.replicas,
                ready_replicas: s.ready_replicas,
                leader: s.leader,
            })
            .collect(),
        edge: EdgeStatus { replicas: seen.edge_replicas, ready_replicas: seen.edge_ready },
        endpoint: seen.endpoint.clone(),
    }
}

fn condition(
    old: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_owned();
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The status of condition `type_`, if reported.
pub fn condition_status<'a>(status: Option<&'a ImClusterStatus>, type_: &str) -> Option<&'a str> {
    status?.conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn healthy() -> Seen {
        Seen {
            shards: (0..2)
                .map(|id| ShardSeen {
                    id,
                    replicas: 3,
                    ready_replicas: 3,
                    updated_replicas: 3,
                    leader: None,
                })
                .collect(),
            edge_replicas: 2,
            edge_ready: 2,
            redis_ready: Some(true),
            endpoint: Some("chat-edge.team.svc:443".into()),
            problems: Vec::new(),
        }
    }

    fn get<'a>(status: &'a ImClusterStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn a_cluster_with_every_pod_ready_is_ready_and_stable() {
        let status = compute(Some(3), &healthy(), None, &time(10));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(get(&status, READY).status, "True");
        assert_eq!(get(&status, PROGRESSING).status, "False");
        assert_eq!(get(&status, DEGRADED).status, "False");
        assert_eq!(status.shards[1].ready_replicas, 3);
        assert_eq!(status.edge.ready_replicas, 2);
    }

    #[test]
    fn a_shard_with_a_majority_serves_while_it_rolls() {
        let mut seen = healthy();
        seen.shards[1].ready_replicas = 2;
        let status = compute(Some(1), &seen, None, &time(10));
        assert_eq!(get(&status, READY).status, "True");
        let progressing = get(&status, PROGRESSING);
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("True", "RollingOut")
        );
        assert_eq!(progressing.message, "shard 1: 2 of 3 replicas ready");
    }

    #[test]
    fn a_shard_still_rolling_to_a_new_template_is_progressing_and_ready() {
        let mut seen = healthy();
        seen.shards[0].updated_replicas = 1;
        let status = compute(Some(5), &seen, None, &time(10));
        assert_eq!(get(&status, READY).status, "True");
        let progressing = get(&status, PROGRESSING);
        assert_eq!(progressing.status, "True");
        assert_eq!(progressing.message, "shard 0: 1 of 3 replicas run the latest template");
    }

    #[test]
    fn a_shard_below_its_majority_makes_the_cluster_not_ready_and_says_which() {
        let mut seen = healthy();
        seen.shards[0].ready_replicas = 1;
        let status = compute(Some(1), &seen, None, &time(10));
        let ready = get(&status, READY);
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "NotServing"));
        assert!(ready.message.contains("shard 0 has 1 of 3"), "{}", ready.message);
    }

    #[test]
    fn no_ready_edge_or_redis_means_not_ready() {
        let mut seen = healthy();
        seen.edge_ready = 0;
        seen.redis_ready = Some(false);
        let ready = get(&compute(None, &seen, None, &time(1)), READY).clone();
        assert_eq!(ready.status, "False");
        assert!(ready.message.contains("no edge is ready"));
        assert!(ready.message.contains("Redis is not ready"));
    }

    #[test]
    fn a_refused_change_is_degraded_with_its_reason() {
        let mut seen = healthy();
        seen.problems.push(Refusal { reason: "ShardsChangeUnsupported", message: "why".into() });
        let status = compute(None, &seen, None, &time(1));
        let degraded = get(&status, DEGRADED);
        assert_eq!(degraded.status, "True");
        assert_eq!(degraded.reason, "ShardsChangeUnsupported");
        assert_eq!(degraded.message, "why");
    }

    #[test]
    fn an_unchanged_cluster_yields_an_equal_status() {
        let first = compute(Some(2), &healthy(), None, &time(10));
        let again = compute(Some(2), &healthy(), Some(&first), &time(99));
        assert_eq!(again, first);
    }

    #[test]
    fn a_transition_moves_only_the_changed_conditions_time() {
        let first = compute(Some(2), &healthy(), None, &time(10));
        let mut seen = healthy();
        seen.shards[0].ready_replicas = 0;
        let next = compute(Some(2), &seen, Some(&first), &time(99));
        assert_eq!(get(&next, READY).last_transition_time, time(99));
        assert_eq!(get(&next, DEGRADED).last_transition_time, time(10));
    }
}
