//! Asks a shard's replicas who leads (`GET /admin/status`), and asks a leader to hand
//! leadership to another replica (`POST /admin/step-down`), through their admin API.

use std::time::Duration;

use serde::Deserialize;

/// How long one replica may take to answer; a shard's replicas are asked one after another
/// only until one answers, so a reconcile waits at most this per unreachable replica.
pub const ADMIN_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a step-down may take: the replica waits up to 10 s for another leader.
pub const STEP_DOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a step-down failed.
#[derive(Debug, thiserror::Error)]
pub enum StepDownError {
    #[error("failed to ask the replica at {addr} to step down")]
    Request { addr: String, source: reqwest::Error },
    #[error("failed to move leadership off {addr}: it answered {status}: {body}")]
    Refused { addr: String, status: u16, body: String },
}

/// Asks the leader serving at `addr` to step down, and returns once another replica leads.
pub async fn step_down(http: &reqwest::Client, addr: &str) -> Result<(), StepDownError> {
    let request = |source| StepDownError::Request { addr: addr.to_owned(), source };
    let response = http
        .post(format!("http://{addr}/admin/step-down"))
        .json(&serde_json::json!({}))
        .timeout(STEP_DOWN_TIMEOUT)
        .send()
        .await
        .map_err(request)?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(StepDownError::Refused { addr: addr.to_owned(), status: status.as_u16(), body })
}

/// The part of a replica's status the operator reads.
#[derive(Debug, Deserialize)]
struct Status {
    leader: Option<u64>,
}

/// The leader of the shard whose replicas serve at `addrs`, as the first replica that answers
/// reports it; `None` when none answers or none knows a leader.
pub async fn leader(http: &reqwest::Client, addrs: &[String]) -> Option<u64> {
    for addr in addrs {
        let answer = http.get(format!("http://{addr}/admin/status")).send().await;
        let Ok(response) = answer else { continue };
        let Ok(status) = response.json::<Status>().await else { continue };
        if status.leader.is_some() {
            return status.leader;
        }
    }
    None
}

/// The HTTP client for the admin API.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().timeout(ADMIN_TIMEOUT).connect_timeout(ADMIN_TIMEOUT).build()
}

#[cfg(test)]
mod tests {
    use axum::Json;
    use axum::routing::get;

    use super::*;

    async fn replica(body: serde_json::Value) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new()
            .route("/admin/status", get(move || async move { Json(body.clone()) }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    #[tokio::test]
    async fn the_first_replica_that_knows_a_leader_names_it() {
        let http = client().unwrap();
        let unknown = replica(serde_json::json!({"role": "candidate", "leader": null})).await;
        let knows = replica(serde_json::json!({"role": "follower", "leader": 3})).await;
        let closed = "127.0.0.1:1".to_owned();
        assert_eq!(leader(&http, &[closed, unknown, knows]).await, Some(3));
    }

    async fn stepping_replica(status: axum::http::StatusCode) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new().route(
            "/admin/step-down",
            axum::routing::post(move || async move { (status, "no other replica is up") }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    #[tokio::test]
    async fn a_step_down_the_leader_accepts_succeeds() {
        let addr = stepping_replica(axum::http::StatusCode::OK).await;
        step_down(&client().unwrap(), &addr).await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_step_down_says_who_refused_and_why() {
        let addr = stepping_replica(axum::http::StatusCode::SERVICE_UNAVAILABLE).await;
        let error = step_down(&client().unwrap(), &addr).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "failed to move leadership off {addr}: it answered 503: no other replica is up"
            )
        );
    }

    #[tokio::test]
    async fn no_reachable_replica_means_no_leader() {
        let http = client().unwrap();
        assert_eq!(leader(&http, &["127.0.0.1:1".to_owned()]).await, None);
    }
}
