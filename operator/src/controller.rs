//! The reconcile loop: renders an ImCluster's objects, applies those that changed, observes
//! what runs and reports it in the status, with Events on notable changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::apply::{self, ApplyError, Outcome};
use crate::crd::ImCluster;
use crate::metrics::Metrics;
use crate::render::topology::{self, Refusal};
use crate::render::{self, MANAGER, RenderError, edge, monitoring, names, network, redis, secret};
use crate::render::{shard, topology::TopologyPlan};
use crate::roll::{self, Step};
use crate::status::{self, DEGRADED, READY, Seen, ShardSeen};

/// How soon a cluster that is not yet ready is looked at again.
const REQUEUE_PROGRESSING: Duration = Duration::from_secs(10);

/// How often a settled cluster is looked at again (for leaders and drift of what runs).
const REQUEUE_SETTLED: Duration = Duration::from_secs(300);

/// The wait after a first failed reconcile: long enough not to hammer an API server that
/// refuses, short enough that a passing problem (a conflict, a timeout) costs little.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);

/// The longest wait between attempts on an object whose reconcile keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("failed to render the cluster's objects")]
    Render(#[from] RenderError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("failed to {action}")]
    Kube { action: String, source: kube::Error },
}

impl ReconcileError {
    /// A bounded label for the failures metric.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Render(_) => "render",
            ReconcileError::Apply(ApplyError::Serialize { .. }) => "serialize",
            ReconcileError::Apply(ApplyError::Read { .. }) => "read",
            ReconcileError::Apply(ApplyError::Apply { .. }) => "apply",
            ReconcileError::Kube { .. } => "api",
        }
    }
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let action = action.into();
    move |source| ReconcileError::Kube { action, source }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub http: reqwest::Client,
    pub metrics: Metrics,
    /// Whether the monitoring.coreos.com PodMonitor kind exists (checked at start).
    pub monitoring: bool,
    /// Consecutive failures per object, for its backoff.
    failures: Mutex<HashMap<ObjectRef<ImCluster>, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("monitoring", &self.monitoring).finish_non_exhaustive()
    }
}

impl Context {
    /// The context of a controller on `client`.
    pub fn new(client: Client, metrics: Metrics, monitoring: bool) -> reqwest::Result<Self> {
        let reporter = Reporter { controller: MANAGER.to_owned(), instance: None };
        Ok(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            http: crate::leader::client()?,
            metrics,
            monitoring,
            failures: Mutex::new(HashMap::new()),
        })
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<ImCluster>, u32>> {
        // A poisoned map only loses backoff counts: take it as it is.
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether the API server serves the Prometheus Operator's PodMonitor kind.
pub async fn monitoring_available(client: &Client) -> bool {
    client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
        .is_ok_and(|list| list.resources.iter().any(|r| r.name == "podmonitors"))
}

/// Runs the controller until `shutdown` completes, then lets running reconciles finish.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let controller =
        Controller::new(Api::<ImCluster>::all(client.clone()), watcher::Config::default())
            .owns(Api::<StatefulSet>::all(client.clone()), owned.clone())
            .owns(Api::<Deployment>::all(client.clone()), owned.clone())
            .owns(Api::<ConfigMap>::all(client), owned);
    // The clusters by condition, counted from the controller's own cache: deleted clusters
    // drop out with it.
    let store = controller.store();
    let metrics = ctx.metrics.clone();
    let counting = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(10));
        loop {
            every.tick().await;
            let clusters = store.state();
            metrics.count_clusters(clusters.iter().map(|c| c.status.as_ref()));
        }
    });
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(error = %error, "reconcile ended with an error");
            }
        })
        .await;
    counting.abort();
}

/// Counts and times one reconcile, and resets the object's backoff on success.
pub async fn reconcile(
    cluster: Arc<ImCluster>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let object = ObjectRef::from_obj(&*cluster);
    let span = info_span!("reconcile", object.ref = %object);
    let started = Instant::now();
    let result = reconcile_inner(&cluster, &ctx).instrument(span).await;
    ctx.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => {
            ctx.metrics.reconciles_total.with_label_values(&["ok"]).inc();
            ctx.failures().remove(&object);
        }
        Err(error) => {
            ctx.metrics.reconciles_total.with_label_values(&["error"]).inc();
            ctx.metrics.failures_total.with_label_values(&[error.reason()]).inc();
        }
    }
    result
}

/// Tries again after 5 s, doubling per consecutive failure of the same object up to 5 min.
pub fn error_policy(cluster: Arc<ImCluster>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let object = ObjectRef::from_obj(&*cluster);
    let mut failures = ctx.failures();
    let count = failures.entry(object.clone()).or_insert(0);
    *count += 1;
    let delay = backoff(*count);
    warn!(object.ref = %object, error = %error, source = ?std::error::Error::source(error),
          retry_in_seconds = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

/// The wait before the next attempt after `failures` consecutive failures (at least 1).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(8);
    FIRST_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

async fn reconcile_inner(cluster: &ImCluster, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = render::namespace(cluster)?;
    let client = ctx.client.clone();

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let existing = config_maps
        .get_opt(&names::topology(cluster))
        .await
        .map_err(kube_err("read the topology ConfigMap"))?;
    let existing = match existing.as_ref().and_then(topology::read) {
        None => None,
        Some(Ok(topology)) => Some(topology),
        Some(Err(error)) => {
            // Never overwrite a document that cannot be read: it holds the running slot map.
            let problem = Refusal {
                reason: "TopologyUnreadable",
                message: format!(
                    "the ConfigMap {} does not hold a valid topology ({error}); the operator \
                     changes nothing until it is repaired",
                    names::topology(cluster)
                ),
            };
            let seen = Seen { problems: vec![problem], ..Seen::default() };
            report(cluster, ctx, &seen, None).await?;
            return Ok(Action::requeue(REQUEUE_SETTLED));
        }
    };
    let plan = topology::plan(cluster, existing.as_ref())?;

    let mut writes = Writes::default();
    ensure_internal_secret(cluster, ctx, &ns, &mut writes).await?;
    apply_children(cluster, ctx, &ns, &plan, &mut writes).await?;
    if writes.0 > 0 {
        info!(writes = writes.0, topology_version = plan.topology.version, "applied changes");
    }

    let mut seen = observe(cluster, ctx, &ns, &plan).await?;
    roll_shards(cluster, ctx, &ns, &plan, &seen).await?;
    grow_shards(cluster, ctx, &plan).await;
    seen.problems.extend(plan.refusals.iter().cloned());
    seen.problems.extend(missing_secrets(cluster, ctx, &ns).await?);
    let topology_changed = existing.as_ref().map(|t| t.version) != Some(plan.topology.version);
    report(cluster, ctx, &seen, topology_changed.then_some(plan.topology.version)).await?;

    let ready = status::compute(None, &seen, None, &now()).conditions.iter().all(|c| {
        (c.type_ == READY && c.status == "True") || (c.type_ != READY && c.status == "False")
    });
    Ok(Action::requeue(if ready { REQUEUE_SETTLED } else { REQUEUE_PROGRESSING }))
}

/// Objects written in this reconcile.
#[derive(Debug, Default)]
struct Writes(u32);

impl Writes {
    fn count(&mut self, ctx: &Context, kind: &str, name: &str, outcome: Outcome) {
        if outcome == Outcome::Applied {
            self.0 += 1;
            ctx.metrics.writes_total.with_label_values(&[kind]).inc();
            info!(kind, name, "applied");
        }
    }
}

async fn put<K>(
    ctx: &Context,
    ns: &str,
    kind: &str,
    object: K,
    writes: &mut Writes,
) -> Result<(), ReconcileError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let name = object.name_any();
    let outcome = apply::apply(&api, kind, object).await?;
    writes.count(ctx, kind, &name, outcome);
    Ok(())
}

/// Creates the internal Secret once; its values are never replaced.
async fn ensure_internal_secret(
    cluster: &ImCluster,
    ctx: &Context,
    ns: &str,
    writes: &mut Writes,
) -> Result<(), ReconcileError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let name = names::internal_secret(cluster);
    let existing = api.get_opt(&name).await.map_err(kube_err("read the internal Secret"))?;
    if let Some(new) = secret::internal_secret(cluster, existing.as_ref(), secret::random_hex)? {
        match api.create(&PostParams::default(), &new).await {
            Ok(_) => writes.count(ctx, "Secret", &name, Outcome::Applied),
            // Another writer created it between the read and the create: keep theirs.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(source) => return Err(kube_err("create the internal Secret")(source)),
        }
    }
    Ok(())
}

async fn apply_children(
    cluster: &ImCluster,
    ctx: &Context,
    ns: &str,
    plan: &TopologyPlan,
    writes: &mut Writes,
) -> Result<(), ReconcileError> {
    put(ctx, ns, "ConfigMap", topology::config_map(cluster, &plan.topology)?, writes).await?;
    if let Some(managed) = redis::managed(cluster) {
        put(ctx, ns, "Service", redis::service(cluster)?, writes).await?;
        put(ctx, ns, "StatefulSet", redis::stateful_set(cluster, managed)?, writes).await?;
        put(ctx, ns, "NetworkPolicy", network::redis(cluster)?, writes).await?;
    }
    for id in 0..plan.shards() {
        let replicas = plan.replicas();
        put(ctx, ns, "Service", shard::headless_service(cluster, id)?, writes).await?;
        put(ctx, ns, "StatefulSet", shard::stateful_set(cluster, id, replicas)?, writes).await?;
        let pdb = shard::disruption_budget(cluster, id, replicas)?;
        put::<PodDisruptionBudget>(ctx, ns, "PodDisruptionBudget", pdb, writes).await?;
    }
    put(ctx, ns, "NetworkPolicy", network::sequencer(cluster)?, writes).await?;
    put::<Deployment>(ctx, ns, "Deployment", edge::deployment(cluster)?, writes).await?;
    put::<Service>(ctx, ns, "Service", edge::service(cluster)?, writes).await?;
    put(ctx, ns, "PodDisruptionBudget", edge::disruption_budget(cluster)?, writes).await?;
    if ctx.monitoring {
        let resource = monitoring::pod_monitor_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &resource);
        let monitor = monitoring::pod_monitor(cluster)?;
        let name = monitor.name_any();
        let outcome = apply::apply(&api, "PodMonitor", monitor).await?;
        writes.count(ctx, "PodMonitor", &name, outcome);
    }
    Ok(())
}

/// What runs: ready pods per shard, edges and Redis, and each shard's leader where a replica
/// answers on its admin API.
async fn observe(
    cluster: &ImCluster,
    ctx: &Context,
    ns: &str,
    plan: &TopologyPlan,
) -> Result<Seen, ReconcileError> {
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let mut seen = Seen::default();
    for shard in &plan.topology.shards {
        let set = sets
            .get_opt(&names::shard(cluster, shard.id))
            .await
            .map_err(kube_err("read a shard StatefulSet"))?;
        let status = set.as_ref().and_then(|s| s.status.as_ref());
        let ready = ready_of(status.and_then(|s| s.ready_replicas));
        let updated = ready_of(status.and_then(|s| s.updated_replicas));
        let addrs: Vec<String> = shard.replicas.iter().map(|r| r.addr.clone()).collect();
        let leader = if ready > 0 { crate::leader::leader(&ctx.http, &addrs).await } else { None };
        seen.shards.push(ShardSeen {
            id: shard.id,
            replicas: plan.replicas(),
            ready_replicas: ready,
            updated_replicas: updated,
            leader,
        });
    }
    if redis::managed(cluster).is_some() {
        let set = sets.get_opt(&names::redis(cluster)).await.map_err(kube_err("read Redis"))?;
        let ready = set.as_ref().and_then(|s| s.status.as_ref()).and_then(|s| s.ready_replicas);
        seen.redis_ready = Some(ready_of(ready) >= 1);
    }
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let edge = deployments
        .get_opt(&names::edge(cluster))
        .await
        .map_err(kube_err("read the edge Deployment"))?;
    seen.edge_replicas = cluster.spec.edge.replicas;
    seen.edge_ready =
        ready_of(edge.as_ref().and_then(|d| d.status.as_ref()).and_then(|s| s.ready_replicas));
    seen.endpoint = Some(endpoint(cluster, ctx, ns).await?);
    Ok(seen)
}

/// Takes one step of each shard's roll to its StatefulSet's latest template (see [`roll`]).
async fn roll_shards(
    cluster: &ImCluster,
    ctx: &Context,
    ns: &str,
    plan: &TopologyPlan,
    seen: &Seen,
) -> Result<(), ReconcileError> {
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    for (shard, shard_seen) in plan.topology.shards.iter().zip(&seen.shards) {
        if shard_seen.updated_replicas >= shard_seen.replicas {
            continue;
        }
        let name = names::shard(cluster, shard.id);
        let set = sets.get_opt(&name).await.map_err(kube_err("read a shard StatefulSet"))?;
        let Some(revision) = set.and_then(|s| s.status).and_then(|s| s.update_revision) else {
            continue;
        };
        let selector = shard::pod_selector(cluster, shard.id)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(kube_err("list a shard's pods"))?;
        let replicas: Vec<roll::Replica> =
            list.items.iter().filter_map(|pod| replica_of(pod, &revision)).collect();
        match roll::next_step(shard.id, &replicas, plan.replicas(), shard_seen.leader) {
            Step::Done | Step::Wait(_) => {}
            Step::StepDown { leader } => move_leadership(cluster, ctx, shard, leader).await,
            Step::Restart { id, pod, reason } => {
                restart(cluster, ctx, &pods, shard.id, id, &pod, reason).await?;
            }
        }
    }
    Ok(())
}

/// Takes the next step of adding the replicas a shard grew by (only shards that grew name
/// founders). A failure is reported and retried on the next reconcile.
async fn grow_shards(cluster: &ImCluster, ctx: &Context, plan: &TopologyPlan) {
    for shard in plan.topology.shards.iter().filter(|s| !s.founders.is_empty()) {
        match crate::membership::grow(&ctx.http, shard).await {
            Ok(crate::membership::Growth::Promoted { id }) => {
                let note = format!("added replica {id} to shard {} as a voter", shard.id);
                info!(shard = shard.id, replica = id, "added a replica");
                publish(ctx, cluster, EventType::Normal, "AddedReplica", note).await;
            }
            Ok(other) => debug!(shard = shard.id, step = ?other, "shard membership"),
            Err(error) => {
                warn!(error = %error, shard = shard.id, "failed to add a replica");
                publish(ctx, cluster, EventType::Warning, "AddReplicaFailed", error.to_string())
                    .await;
            }
        }
    }
}

/// Asks the shard's leader to step down; a failure is reported and retried next reconcile,
/// the leader keeping its old template meanwhile.
async fn move_leadership(
    cluster: &ImCluster,
    ctx: &Context,
    shard: &dolphin_topology::Shard,
    leader: u64,
) {
    let Some(replica) = shard.replicas.iter().find(|r| r.id == leader) else { return };
    match crate::leader::step_down(&ctx.http, &replica.addr).await {
        Ok(()) => {
            let note = format!(
                "moved leadership of shard {} off replica {leader} before restarting it",
                shard.id
            );
            publish(ctx, cluster, EventType::Normal, "MovedLeadership", note).await;
        }
        Err(error) => {
            warn!(error = %error, shard = shard.id, "failed to move leadership");
            publish(ctx, cluster, EventType::Warning, "StepDownFailed", error.to_string()).await;
        }
    }
}

/// Deletes a shard's pod so that its StatefulSet recreates it with the latest template.
async fn restart(
    cluster: &ImCluster,
    ctx: &Context,
    pods: &Api<Pod>,
    shard: u32,
    id: u64,
    pod: &str,
    reason: &str,
) -> Result<(), ReconcileError> {
    match pods.delete(pod, &DeleteParams::default()).await {
        Ok(_) => {}
        // Already gone: the StatefulSet recreates it either way.
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(source) => return Err(kube_err("restart a shard's pod")(source)),
    }
    info!(pod, shard, replica = id, reason, "restarted for the new template");
    let note =
        format!("restarted {pod} (shard {shard}, replica {id}, {reason}) for the new template");
    publish(ctx, cluster, EventType::Normal, "RestartedReplica", note).await;
    Ok(())
}

/// A shard pod as the roll sees it; `None` for a pod whose name carries no ordinal.
fn replica_of(pod: &Pod, revision: &str) -> Option<roll::Replica> {
    let name = pod.name_any();
    let id = roll::ordinal(&name)?;
    let updated =
        pod.labels().get("controller-revision-hash").map(String::as_str) == Some(revision);
    let ready = pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(roll::Replica { id, pod: name, updated, ready })
}

/// Publishes an Event on the ImCluster; a failure is logged, never fatal.
async fn publish(ctx: &Context, cluster: &ImCluster, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        warn!(error = %error, reason, "failed to publish an event");
    }
}

fn ready_of(count: Option<i32>) -> u32 {
    count.and_then(|c| u32::try_from(c).ok()).unwrap_or(0)
}

/// The load balancer's address when it has one, else the Service's name in the cluster.
async fn endpoint(cluster: &ImCluster, ctx: &Context, ns: &str) -> Result<String, ReconcileError> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let name = names::edge(cluster);
    let port = cluster.spec.edge.service.port;
    let service = services.get_opt(&name).await.map_err(kube_err("read the edge Service"))?;
    let ingress = service
        .and_then(|s| s.status)
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .and_then(|list| list.into_iter().next())
        .and_then(|i| i.ip.or(i.hostname));
    Ok(match ingress {
        Some(host) => format!("{host}:{port}"),
        None => format!("{name}.{ns}.svc:{port}"),
    })
}

/// Secrets the spec names that do not exist: the pods could not start without them.
async fn missing_secrets(
    cluster: &ImCluster,
    ctx: &Context,
    ns: &str,
) -> Result<Vec<Refusal>, ReconcileError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut named = Vec::new();
    if let Some(jwt) = cluster.spec.auth.as_ref().and_then(|a| a.jwt_secret_ref.as_ref()) {
        named.push(("auth.jwtSecretRef", jwt));
    }
    if let Some(external) = &cluster.spec.queue.redis.external
        && let Some(password) = &external.password_secret_ref
    {
        named.push(("queue.redis.external.passwordSecretRef", password));
    }
    let mut problems = Vec::new();
    for (field, reference) in named {
        let secret = api.get_opt(&reference.name).await.map_err(kube_err("read a Secret"))?;
        let has_key = secret.as_ref().is_some_and(|s| {
            s.data.as_ref().is_some_and(|d| d.contains_key(&reference.key))
                || s.string_data.as_ref().is_some_and(|d| d.contains_key(&reference.key))
        });
        if !has_key {
            problems.push(Refusal {
                reason: "SecretMissing",
                message: format!(
                    "{field} names the key {:?} of the Secret {:?}, which does not exist in \
                     namespace {ns}",
                    reference.key, reference.name
                ),
            });
        }
    }
    Ok(problems)
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Writes the status when it changed, and publishes Events for what changed notably.
async fn report(
    cluster: &ImCluster,
    ctx: &Context,
    seen: &Seen,
    topology_version: Option<u64>,
) -> Result<(), ReconcileError> {
    let previous = cluster.status.as_ref();
    let next = status::compute(cluster.metadata.generation, seen, previous, &now());
    if previous == Some(&next) {
        return Ok(());
    }
    let ns = render::namespace(cluster)?;
    let api: Api<ImCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = Patch::Merge(serde_json::json!({ "status": next }));
    api.patch_status(&cluster.name_any(), &PatchParams::default(), &patch)
        .await
        .map_err(kube_err("write the ImCluster status"))?;

    let mut events = Vec::new();
    if let Some(version) = topology_version {
        events.push((EventType::Normal, "TopologyWritten", format!("topology version {version}")));
    }
    let was_ready = status::condition_status(previous, READY);
    let is_ready = status::condition_status(Some(&next), READY);
    if was_ready != is_ready {
        let ready = next.conditions.iter().find(|c| c.type_ == READY);
        let message = ready.map(|c| c.message.clone()).unwrap_or_default();
        match is_ready {
            Some("True") => events.push((EventType::Normal, "Ready", message)),
            _ => events.push((EventType::Warning, "NotReady", message)),
        }
    }
    let degraded = next.conditions.iter().find(|c| c.type_ == DEGRADED && c.status == "True");
    let was = previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == DEGRADED));
    if let Some(degraded) = degraded
        && was.is_none_or(|w| w.message != degraded.message)
    {
        events.push((EventType::Warning, "Refused", degraded.message.clone()));
    }
    for (type_, reason, note) in events {
        publish(ctx, cluster, type_, reason, note).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_five_seconds_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
