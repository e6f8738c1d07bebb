//! Growing a running shard: the replicas the topology lists beyond its members are added by
//! the shard's leader as learners, which catch up by log or snapshot, and then promoted to
//! voters, one replica per step, through the replicas' admin API.
//!
//! A replica that is not one of its shard's founders never forms a shard of its own (see
//! `dolphin_topology::Shard::bootstrap_members`): it waits, serving its admin API, until the
//! leader adds it. Quorum is never at risk: a learner does not vote, and promoting one
//! caught-up learner to voter moves a group of 3 to 4 (quorum 3) and then 5 (quorum 3).

use std::collections::BTreeSet;
use std::time::Duration;

use dolphin_topology::Shard;
use serde::Deserialize;

/// How long the leader may take to bring a learner up to date before the step is retried on
/// the next reconcile (the learner keeps what it received).
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// What one step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Growth {
    /// Every listed replica is a voter.
    Complete,
    /// No replica answered as leader: nothing to do until one does.
    NoLeader,
    /// The next replica to add does not answer yet (its pod is starting).
    Waiting { id: u64 },
    /// The replica was added as a learner, caught up, and became a voter.
    Promoted { id: u64 },
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("failed to ask the leader at {addr} to {action}")]
    Request { addr: String, action: &'static str, source: reqwest::Error },
    #[error("the leader at {addr} refused to {action}: {status}: {body}")]
    Refused { addr: String, action: &'static str, status: u16, body: String },
}

#[derive(Debug, Deserialize)]
struct Status {
    role: String,
    voters: BTreeSet<u64>,
    learners: BTreeSet<u64>,
}

async fn status_of(http: &reqwest::Client, addr: &str) -> Option<Status> {
    let response = http.get(format!("http://{addr}/admin/status")).send().await.ok()?;
    response.json().await.ok()
}

/// Takes the next step toward every replica of `shard` being a voter.
pub async fn grow(http: &reqwest::Client, shard: &Shard) -> Result<Growth, MembershipError> {
    let mut leader = None;
    for replica in &shard.replicas {
        if let Some(status) = status_of(http, &replica.addr).await
            && status.role == "leader"
        {
            leader = Some((replica.addr.clone(), status));
            break;
        }
    }
    let Some((addr, status)) = leader else { return Ok(Growth::NoLeader) };
    let Some(next) = shard.replicas.iter().find(|r| !status.voters.contains(&r.id)) else {
        return Ok(Growth::Complete);
    };
    if status_of(http, &next.addr).await.is_none() {
        return Ok(Growth::Waiting { id: next.id });
    }
    if !status.learners.contains(&next.id) {
        let body = serde_json::json!({"id": next.id, "addr": next.addr});
        post(http, &addr, "/admin/learners", &body, "add a learner").await?;
    }
    post(http, &addr, "/admin/promote", &serde_json::json!({"id": next.id}), "promote a learner")
        .await?;
    Ok(Growth::Promoted { id: next.id })
}

async fn post(
    http: &reqwest::Client,
    addr: &str,
    path: &str,
    body: &serde_json::Value,
    action: &'static str,
) -> Result<(), MembershipError> {
    let response = http
        .post(format!("http://{addr}{path}"))
        .json(body)
        .timeout(CATCH_UP_TIMEOUT)
        .send()
        .await
        .map_err(|source| MembershipError::Request { addr: addr.to_owned(), action, source })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(MembershipError::Refused { addr: addr.to_owned(), action, status: status.as_u16(), body })
}
