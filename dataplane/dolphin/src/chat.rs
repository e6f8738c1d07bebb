//! `dolphin chat`: a terminal client for one conversation.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use dolphin_client::{Client, ClientConfig, ClientEvent};
use dolphin_protocol::ids::{self, ConvRef};
use dolphin_protocol::{Body, ClientFrame, Message, ServerFrame};
use tokio::io::{AsyncBufReadExt, BufReader};

/// What `dolphin chat` needs.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Who you are.
    user: String,
    /// Whom to talk to: a user id (a direct conversation) or a conversation id (g:...).
    with: String,
    /// The server.
    #[arg(long, env = "DOLPHIN_URL", default_value = "ws://127.0.0.1:8080")]
    url: String,
    /// A token for USER; made from the data folder's secret when left out.
    #[arg(long, env = "DOLPHIN_TOKEN")]
    token: Option<String>,
    #[arg(long, env = "DOLPHIN_DATA", default_value = "./dolphin-data")]
    data: PathBuf,
    /// This terminal's device id.
    #[arg(long, default_value = "terminal")]
    device: String,
}

#[allow(clippy::print_stdout)]
fn show(message: &Message) {
    let text = match &message.body {
        Body::Text { text } => text.clone(),
        Body::System(system) => format!("* {:?} {}", system.event, system.users.join(", ")),
        Body::Recalled => "(recalled)".to_owned(),
        other => format!("[{}]", other.kind()),
    };
    println!("#{:<4} {:>12}: {}", message.seq, message.from, text);
}

#[allow(clippy::print_stdout)]
fn note(text: &str) {
    println!("-- {text}");
}

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    ids::check_user(&args.user)?;
    let conv = if ConvRef::parse(&args.with).is_ok() {
        args.with.clone()
    } else {
        ids::check_user(&args.with)?;
        ids::direct_conv(&args.user, &args.with)
    };
    let token = match args.token {
        Some(token) => token,
        None => {
            let secret = dolphin::secrets::jwt_secret(&args.data)?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
            dolphin_edge::auth::issue(secret.as_bytes(), &args.user, now, 24 * 3600)?
        }
    };
    let config = ClientConfig::new(args.url.clone(), token, args.device);
    let (client, mut events) = Client::connect(config)
        .await
        .with_context(|| format!("failed to connect to {}", args.url))?;
    note(&format!("{} in {conv}; type to send, /quit to leave", args.user));

    // The last screenful of history.
    let target = conv.clone();
    let history = client
        .request(move |rid| {
            ClientFrame::Fetch(dolphin_protocol::Fetch {
                rid,
                conv: target,
                after: None,
                before: Some(u64::MAX),
                limit: Some(20),
            })
        })
        .await;
    if let Ok(ServerFrame::Messages(page)) = history {
        for message in page.messages.iter().rev() {
            show(message);
        }
    }

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let line = line.trim();
                if line == "/quit" {
                    break;
                }
                if line.is_empty() {
                    continue;
                }
                if let Err(error) = client.send(&conv, Body::Text { text: line.to_owned() }).await {
                    note(&format!("not sent: {error}"));
                }
            }
            event = events.recv() => match event {
                Some(ClientEvent::Message(message)) if message.conv == conv => show(&message),
                Some(ClientEvent::Rejected(rejected)) => note(&format!("refused: {}", rejected.message)),
                Some(ClientEvent::Disconnected { reason }) => note(&format!("disconnected ({reason}); reconnecting")),
                Some(ClientEvent::Push(ServerFrame::Typing(typing))) if typing.conv == conv => {
                    note(&format!("{} is typing", typing.user));
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    client.close().await;
    Ok(())
}
