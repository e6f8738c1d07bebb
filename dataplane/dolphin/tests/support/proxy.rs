//! A TCP proxy the tests control, to cut or hold a client's connection without touching the
//! server.

#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forwards both ways.
    Pass,
    /// Forwards client to server, but keeps server-to-client bytes back (they are released
    /// on `Pass` and dropped on `Cut`).
    Hold,
    /// Closes every connection and refuses new ones.
    Cut,
}

/// A proxy in front of one upstream address.
pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Pass);
        let modes = mode.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *modes.borrow() == Mode::Cut {
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                tokio::spawn(pipe(client, server, modes.subscribe()));
            }
        });
        Proxy { addr, mode }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

async fn pipe(client: TcpStream, server: TcpStream, mut mode: watch::Receiver<Mode>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut up = [0u8; 16 * 1024];
    let mut down = [0u8; 16 * 1024];
    let mut held: Vec<u8> = Vec::new();
    loop {
        let current = *mode.borrow_and_update();
        if current == Mode::Cut {
            return;
        }
        if current == Mode::Pass && !held.is_empty() {
            if client_write.write_all(&held).await.is_err() {
                return;
            }
            held.clear();
        }
        tokio::select! {
            changed = mode.changed() => if changed.is_err() { return },
            read = client_read.read(&mut up) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if server_write.write_all(&up[..n]).await.is_err() { return },
            },
            read = server_read.read(&mut down) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) if current == Mode::Hold => held.extend_from_slice(&down[..n]),
                Ok(n) => if client_write.write_all(&down[..n]).await.is_err() { return },
            },
        }
    }
}
