//! A cluster of processes that has seen enough traffic for every labelled series the metrics
//! tests look for to exist, and scraping its processes.

use dolphin::local_cluster::{ClusterSpec, LocalCluster};
use dolphin_client::{Client, ClientConfig};
use dolphin_protocol::{Body, ClientFrame, Fetch};

/// Starts 2 shards of 3 replicas and 1 edge in `dir`, and drives traffic: messages, a group,
/// a refusal by the state machine (a `rejected` push), an error reply, and a refused upgrade.
/// Returns the cluster, and the client with its events, which stays connected while they are
/// kept.
pub async fn cluster_after_traffic(dir: &std::path::Path) -> (LocalCluster, Client, Events) {
    let spec = ClusterSpec::new(dir.to_path_buf(), env!("CARGO_BIN_EXE_dolphin").into(), 2, 3, 1);
    let cluster = LocalCluster::start(spec).await.expect("the local cluster starts");
    let url = cluster.edge_url(0).expect("one edge");
    let config = ClientConfig::new(url, cluster.token("alice"), "phone");
    let (alice, events) = Client::connect(config).await.expect("alice connects");
    let send = async |conv: &str, text: String| {
        alice.send(conv, Body::Text { text }).await.expect("the send is accepted");
    };
    for n in 0..20 {
        send("d:alice:bob", format!("m{n}")).await;
    }
    let group = alice.create_group("observed", &["bob"]).await.expect("the group is made");
    send(&group, "to the group".into()).await;
    send("g:nobody-made-this", "refused".into()).await;
    let refused = alice
        .request(|rid| {
            let conv = "d:bob:carol".into();
            ClientFrame::Fetch(Fetch { rid, conv, after: None, before: None, limit: None })
        })
        .await;
    assert!(refused.is_err(), "a fetch of someone else's conversation is refused");
    let edge = cluster.edge_addrs()[0].clone();
    let upgrade = reqwest::get(format!("http://{edge}/v1/ws?token=nonsense")).await;
    assert_ne!(upgrade.expect("the edge answers").status(), 101);
    (cluster, alice, events)
}

/// What a client reports.
pub type Events = tokio::sync::mpsc::UnboundedReceiver<dolphin_client::ClientEvent>;

/// The Prometheus text of the process serving `addr`.
pub async fn scrape(addr: &str) -> String {
    let response = reqwest::get(format!("http://{addr}/metrics")).await.expect("a scrape");
    assert!(response.status().is_success(), "{addr}/metrics answered {}", response.status());
    response.text().await.expect("a scrape's body")
}
