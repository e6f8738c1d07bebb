//! What the file tests share: a real `dolphin dev` process, tokens, HTTP calls, and a
//! WebSocket client that sends a message naming a file and waits until it is ordered.

#![allow(dead_code, reason = "each test file uses part of it")]

use std::time::Duration;

use dolphin_client::{Client, ClientConfig, ClientEvent};
use dolphin_protocol::Body;
use serde_json::Value;
use tokio::process::Child;

#[path = "../support/process.rs"]
mod process;

/// How long a step may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A `dolphin dev` process on a free port.
pub struct Dev {
    pub child: Child,
    pub addr: String,
    pub data: tempfile::TempDir,
    secret: String,
}

impl Dev {
    /// Starts the real binary with `args` added to `dev`, and `env` set, and waits until it
    /// reports that it runs.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Dev {
        let data = tempfile::tempdir().unwrap();
        let (child, addr) = process::start_dev(data.path(), args, env, WAIT).await;
        let secret = std::fs::read_to_string(data.path().join("jwt-secret")).unwrap();
        Dev { child, addr, data, secret }
    }

    pub fn token(&self, user: &str) -> String {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        dolphin_edge::auth::issue(self.secret.as_bytes(), user, now, 3600).unwrap()
    }

    pub fn files_url(&self) -> String {
        format!("http://{}/v1/files", self.addr)
    }

    /// Uploads `body` as `name` for `user`; an error when no answer comes (the body failed).
    pub async fn send_upload(
        &self,
        user: &str,
        name: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Result<reqwest::Response> {
        reqwest::Client::new()
            .post(self.files_url())
            .query(&[("name", name)])
            .bearer_auth(self.token(user))
            .body(body)
            .send()
            .await
    }

    /// Uploads `body` as `name` for `user`.
    pub async fn upload(
        &self,
        user: &str,
        name: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.send_upload(user, name, body).await.expect("the upload request gets an answer")
    }

    /// Uploads `bytes` and returns the 201 answer's JSON.
    pub async fn upload_ok(&self, user: &str, name: &str, bytes: Vec<u8>) -> Value {
        let response = self.upload(user, name, bytes).await;
        assert_eq!(response.status(), 201, "upload refused: {:?}", response.text().await);
        response.json().await.unwrap()
    }

    /// Downloads file `id` as `user`, with extra headers.
    pub async fn download(&self, user: &str, id: &str, range: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .get(format!("{}/{id}", self.files_url()))
            .bearer_auth(self.token(user));
        if let Some(range) = range {
            request = request.header("Range", range);
        }
        request.send().await.expect("the download request gets an answer")
    }

    /// Connects `user` over WebSocket.
    pub async fn connect(&self, user: &str) -> Connected {
        let mut config = ClientConfig::new(format!("ws://{}", self.addr), self.token(user), "t");
        config.reconnect = false;
        let (client, events) = Client::connect(config).await.expect("client connects");
        Connected { client, events }
    }

    /// The peak resident memory of the server process so far, in bytes (VmHWM).
    pub fn peak_rss_bytes(&self) -> u64 {
        let pid = self.child.id().expect("the server is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM is reported");
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// Every regular file under the files folder of the data folder.
    pub fn stored_files(&self) -> Vec<std::path::PathBuf> {
        walk(&self.data.path().join("files"))
    }
}

/// Every regular file under `dir`.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// A WebSocket client and what it is pushed.
pub struct Connected {
    pub client: Client,
    pub events: tokio::sync::mpsc::UnboundedReceiver<ClientEvent>,
}

impl Connected {
    /// Sends `body` to `conv` and waits until its own push shows it ordered.
    pub async fn send_ordered(&mut self, conv: &str, body: Body) {
        let cid = self.client.send(conv, body).await.expect("the message is accepted");
        tokio::time::timeout(WAIT, async {
            while let Some(event) = self.events.recv().await {
                match event {
                    ClientEvent::Message(message) if message.cid == cid => return,
                    ClientEvent::Rejected(rejected) => {
                        panic!("the message was rejected: {rejected:?}")
                    }
                    _ => {}
                }
            }
            panic!("the connection closed before the message was ordered");
        })
        .await
        .expect("the message was not ordered in time");
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
