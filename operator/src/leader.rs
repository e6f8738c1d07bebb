//! Asks a shard's replicas who leads, through their admin API (`GET /admin/status`).

use std::time::Duration;

use serde::Deserialize;

/// How long one replica may take to answer; a shard's replicas are asked one after another
/// only until one answers, so a reconcile waits at most this per unreachable replica.
pub const ADMIN_TIMEOUT: Duration = Duration::from_millis(500);

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

    #[tokio::test]
    async fn no_reachable_replica_means_no_leader() {
        let http = client().unwrap();
        assert_eq!(leader(&http, &["127.0.0.1:1".to_owned()]).await, None);
    }
}
