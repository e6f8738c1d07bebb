//! Leader election among operator replicas, on a `coordination.k8s.io/v1` Lease.
//!
//! One replica holds the Lease and reconciles; the others wait. The holder renews the Lease
//! every [`Election::renew_every`]; a waiting replica takes it over once the Lease has not
//! changed for a whole lease duration as measured by the waiter's own clock (so clocks that
//! disagree between nodes do not matter). Every write names the `resourceVersion` it read,
//! so two replicas that try at once cannot both win: the API server refuses the second.
//!
//! # Guarantees
//!
//! A holder that cannot renew for a lease duration stops reconciling ([`Election::hold`]
//! returns), before a waiter may take over: the waiter waits a full duration after the last
//! change it saw, and the holder gives up a duration after its last successful renewal.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{debug, info, warn};

/// Why an election step failed.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("failed to read the Lease {name}")]
    Read { name: String, source: kube::Error },
    #[error("failed to write the Lease {name}")]
    Write { name: String, source: kube::Error },
    #[error("lost the Lease {name}: not renewed for {seconds} s")]
    Lost { name: String, seconds: u64 },
}

/// What a replica does with the Lease it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It holds the Lease: write a new renew time.
    Renew,
    /// The Lease is free or expired: write this replica as the holder.
    TakeOver,
    /// Another replica holds it: read again later.
    Wait,
}

/// The decision for a Lease held by `holder` that has not changed for `unchanged_for`.
pub fn decide(
    holder: Option<&str>,
    identity: &str,
    unchanged_for: Duration,
    duration: Duration,
) -> Decision {
    match holder {
        Some(holder) if holder == identity => Decision::Renew,
        Some(holder) if !holder.is_empty() && unchanged_for < duration => Decision::Wait,
        _ => Decision::TakeOver,
    }
}

/// One replica's part in the election.
#[derive(Debug)]
pub struct Election {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The `resourceVersion` last read and when it was first seen.
    observed: Option<(String, Instant)>,
}

impl Election {
    /// An election on the Lease `name` in `namespace`, for the replica called `identity`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Election {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            observed: None,
        }
    }

    /// How often the holder renews: a third of the duration, so two renewals may fail in a
    /// row before the Lease is at risk.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&mut self) -> Result<(), ElectionError> {
        let mut announced = false;
        loop {
            if self.try_hold().await? {
                info!(lease = %self.name, identity = %self.identity, "became the leader");
                return Ok(());
            }
            if !announced {
                info!(lease = %self.name, identity = %self.identity, "waiting for the lease");
                announced = true;
            }
            tokio::time::sleep(self.renew_every()).await;
        }
    }

    /// Renews the Lease until renewal has failed for a whole lease duration; returns why.
    pub async fn hold(&mut self) -> ElectionError {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.renew_every()).await;
            match self.try_hold().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    return ElectionError::Lost { name: self.name.clone(), seconds: 0 };
                }
                Err(error) => warn!(error = %error, "failed to renew the lease"),
            }
            if renewed.elapsed() >= self.duration {
                let seconds = renewed.elapsed().as_secs();
                return ElectionError::Lost { name: self.name.clone(), seconds };
            }
        }
    }

    /// Gives the Lease up, so that a waiting replica takes over at once rather than after a
    /// lease duration. Failure only delays the takeover, so it is logged, not returned.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => info!(lease = %self.name, "released the lease"),
            Err(error) => warn!(error = %error, "failed to release the lease"),
        }
    }

    /// Reads the Lease and renews or takes it when this replica may; true when it holds it.
    async fn try_hold(&mut self) -> Result<bool, ElectionError> {
        let read = |source| ElectionError::Read { name: self.name.clone(), source };
        let Some(lease) = self.api.get_opt(&self.name).await.map_err(read)? else {
            return self.create().await;
        };
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let unchanged_for = match &self.observed {
            Some((seen, since)) if *seen == version => since.elapsed(),
            _ => {
                self.observed = Some((version, Instant::now()));
                Duration::ZERO
            }
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let decision =
            decide(spec.holder_identity.as_deref(), &self.identity, unchanged_for, self.duration);
        debug!(lease = %self.name, holder = ?spec.holder_identity, ?decision, "read the lease");
        if decision == Decision::Wait {
            return Ok(false);
        }
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut next = lease;
        let spec = next.spec.get_or_insert_with(LeaseSpec::default);
        if decision == Decision::TakeOver {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.duration_seconds());
        match self.api.replace(&self.name, &PostParams::default(), &next).await {
            Ok(_) => Ok(true),
            // Someone else wrote it since the read: they won this round.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(ElectionError::Write { name: self.name.clone(), source }),
        }
    }

    async fn create(&mut self) -> Result<bool, ElectionError> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_duration_seconds: Some(self.duration_seconds()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(ElectionError::Write { name: self.name.clone(), source }),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    #[test]
    fn the_holder_renews_its_own_lease() {
        let decision = decide(Some("a"), "a", Duration::from_secs(60), DURATION);
        assert_eq!(decision, Decision::Renew);
    }

    #[test]
    fn a_lease_held_by_another_and_recently_changed_is_waited_for() {
        let decision = decide(Some("b"), "a", Duration::from_secs(14), DURATION);
        assert_eq!(decision, Decision::Wait);
    }

    #[test]
    fn a_lease_unchanged_for_a_whole_duration_is_taken_over() {
        let decision = decide(Some("b"), "a", DURATION, DURATION);
        assert_eq!(decision, Decision::TakeOver);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        assert_eq!(decide(None, "a", Duration::ZERO, DURATION), Decision::TakeOver);
        assert_eq!(decide(Some(""), "a", Duration::ZERO, DURATION), Decision::TakeOver);
    }
}
