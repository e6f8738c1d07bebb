//! The order in which a shard's replicas move to a new pod template: one at a time, only
//! while every replica is ready, followers first, and the leader only after it handed
//! leadership to another replica. A pure function, so every decision is unit-tested.
//!
//! Shard StatefulSets use the `OnDelete` update strategy: Kubernetes changes no pod by itself,
//! and the operator restarts (deletes) one pod per step as decided here.
//!
//! # Guarantees
//!
//! - A replica is restarted only when every replica of the shard is ready, so a shard of 3 or
//!   5 never runs below its majority because of a roll.
//! - While the leader is known, it is never restarted as the leader: it is asked to step down
//!   first, and restarted once another replica leads.
//!
//! NOTE: when no replica answers on its admin API (the operator cannot reach port 7000), the
//! leader is unknown and the roll goes on one replica at a time from the highest id, as
//! Kubernetes would. Quorum is kept, but the leader may be restarted while it leads, which
//! costs the shard an election. Letting the operator reach the admin API lifts this.

/// One replica of a shard as the roll sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// The Raft id, which is also the pod's ordinal.
    pub id: u64,
    pub pod: String,
    /// Whether the pod runs the StatefulSet's latest template.
    pub updated: bool,
    pub ready: bool,
}

/// What to do next in a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Every replica runs the latest template.
    Done,
    /// Nothing may be restarted now; why.
    Wait(String),
    /// Ask the leader to hand leadership to another replica.
    StepDown { leader: u64 },
    /// Delete the pod so that it comes back with the latest template.
    Restart { id: u64, pod: String, reason: &'static str },
}

/// The next step of shard `shard`, which should have `want` replicas and is led by `leader`
/// when known.
pub fn next_step(shard: u32, replicas: &[Replica], want: u32, leader: Option<u64>) -> Step {
    if replicas.len() as u32 == want && replicas.iter().all(|r| r.updated) {
        return Step::Done;
    }
    let ready = replicas.iter().filter(|r| r.ready).count() as u32;
    if (replicas.len() as u32) < want || ready < want {
        return Step::Wait(format!(
            "shard {shard}: {ready} of {want} replicas ready; the next replica restarts once \
             all are"
        ));
    }

    // Highest id first among those that may go, so that a roll resumed by another operator
    // replica picks the same pod.
    let mut stale: Vec<&Replica> = replicas.iter().filter(|r| !r.updated).collect();
    stale.sort_by_key(|r| std::cmp::Reverse(r.id));
    let Some(leader) = leader else {
        let next = stale[0];
        return Step::Restart { id: next.id, pod: next.pod.clone(), reason: "leader unknown" };
    };
    if let Some(follower) = stale.iter().find(|r| r.id != leader) {
        return Step::Restart { id: follower.id, pod: follower.pod.clone(), reason: "follower" };
    }
    let leader_replica = stale[0];
    if want == 1 {
        // A single replica cannot hand leadership to anyone: the shard is down while it
        // restarts, which a one-replica shard accepts.
        return Step::Restart {
            id: leader_replica.id,
            pod: leader_replica.pod.clone(),
            reason: "single replica",
        };
    }
    Step::StepDown { leader }
}

/// The pod ordinal at the end of a StatefulSet pod's name (`NAME-shard-0-3` is 3).
pub fn ordinal(pod: &str) -> Option<u64> {
    pod.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(states: &[(u64, bool, bool)]) -> Vec<Replica> {
        states
            .iter()
            .map(|&(id, updated, ready)| Replica {
                id,
                pod: format!("chat-shard-0-{id}"),
                updated,
                ready,
            })
            .collect()
    }

    fn restart(id: u64, reason: &'static str) -> Step {
        Step::Restart { id, pod: format!("chat-shard-0-{id}"), reason }
    }

    #[test]
    fn a_shard_whose_replicas_all_run_the_latest_template_is_done() {
        let all = replicas(&[(1, true, true), (2, true, true), (3, true, false)]);
        assert_eq!(next_step(0, &all, 3, Some(1)), Step::Done);
    }

    #[test]
    fn followers_restart_before_the_leader_highest_id_first() {
        let all = replicas(&[(1, false, true), (2, false, true), (3, false, true)]);
        assert_eq!(next_step(0, &all, 3, Some(3)), restart(2, "follower"));
        assert_eq!(next_step(0, &all, 3, Some(1)), restart(3, "follower"));
    }

    #[test]
    fn nothing_restarts_while_a_replica_is_not_ready() {
        let all = replicas(&[(1, false, true), (2, true, false), (3, false, true)]);
        let Step::Wait(why) = next_step(0, &all, 3, Some(1)) else { panic!("must wait") };
        assert_eq!(why, "shard 0: 2 of 3 replicas ready; the next replica restarts once all are");
    }

    #[test]
    fn nothing_restarts_while_a_replica_is_missing() {
        let two = replicas(&[(1, false, true), (2, false, true)]);
        assert!(matches!(next_step(0, &two, 3, Some(1)), Step::Wait(_)));
    }

    #[test]
    fn a_leader_left_alone_on_the_old_template_is_asked_to_step_down() {
        let all = replicas(&[(1, false, true), (2, true, true), (3, true, true)]);
        assert_eq!(next_step(0, &all, 3, Some(1)), Step::StepDown { leader: 1 });
    }

    #[test]
    fn once_leadership_moved_the_old_leader_restarts_as_a_follower() {
        let all = replicas(&[(1, false, true), (2, true, true), (3, true, true)]);
        assert_eq!(next_step(0, &all, 3, Some(3)), restart(1, "follower"));
    }

    #[test]
    fn a_single_replica_restarts_without_a_step_down() {
        let one = replicas(&[(1, false, true)]);
        assert_eq!(next_step(0, &one, 1, Some(1)), restart(1, "single replica"));
    }

    #[test]
    fn without_a_known_leader_the_highest_stale_id_restarts() {
        let all = replicas(&[(1, false, true), (2, false, true), (3, true, true)]);
        assert_eq!(next_step(0, &all, 3, None), restart(2, "leader unknown"));
    }

    #[test]
    fn the_ordinal_is_the_last_part_of_the_pod_name() {
        assert_eq!(ordinal("chat-shard-12-3"), Some(3));
        assert_eq!(ordinal("chat"), None);
        assert_eq!(ordinal("chat-shard-x"), None);
    }
}
