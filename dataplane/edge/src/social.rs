//! Friends and moments at the edge: invite codes, requests by code, friend lists and the
//! merged moments feed, which reads the shards of many users.

use std::collections::BTreeMap;

use dolphin_protocol::{ErrorCode, Feed, Friends, Invite, MomentFeed, ServerFrame};
use dolphin_sequencer::query::{Answer, Query};
use dolphin_state::Command;
use dolphin_state::command::user_key;
use dolphin_state::friends::FriendList;
use dolphin_state::moments;

use crate::config::DEFAULT_FEED_LIMIT;
use crate::handler::{Caller, Context, command_reply, internal, now_ms, unavailable};
use crate::invite::InviteError;

fn no_invites(rid: String) -> ServerFrame {
    ServerFrame::error(
        Some(rid),
        ErrorCode::Unavailable,
        "invite codes are not configured on this edge",
    )
}

/// `friend.invite`: a fresh code for the caller.
pub fn invite(ctx: &Context, caller: &Caller, rid: String) -> ServerFrame {
    let Some(invites) = &ctx.config.invites else { return no_invites(rid) };
    match invites.issue(&caller.user) {
        Ok(issued) => ServerFrame::Invite(Invite {
            rid,
            code: issued.code,
            link: issued.link,
            qr_svg: issued.qr_svg,
        }),
        Err(error) => ServerFrame::error(Some(rid), ErrorCode::Internal, error.to_string()),
    }
}

/// `friend.request`, by a user id or a scanned code.
pub async fn request(
    ctx: &Context,
    caller: &Caller,
    ask: dolphin_protocol::FriendRequest,
) -> ServerFrame {
    let to = match (ask.code, ask.user) {
        (Some(code), _) => {
            let Some(invites) = &ctx.config.invites else { return no_invites(ask.rid) };
            match invites.check(&code) {
                Ok(user) => user,
                Err(error @ (InviteError::Expired | InviteError::Invalid(_))) => {
                    return ServerFrame::error(
                        Some(ask.rid),
                        ErrorCode::BadRequest,
                        error.to_string(),
                    );
                }
                Err(error) => {
                    return ServerFrame::error(
                        Some(ask.rid),
                        ErrorCode::Internal,
                        error.to_string(),
                    );
                }
            }
        }
        (None, Some(user)) => user,
        (None, None) => {
            return ServerFrame::error(Some(ask.rid), ErrorCode::BadRequest, "give code or user");
        }
    };
    if to == caller.user {
        return ServerFrame::error(
            Some(ask.rid),
            ErrorCode::BadRequest,
            "a user cannot befriend themselves",
        );
    }
    let command = Command::FriendRequest { from: caller.user.clone(), to, ts: now_ms() };
    command_reply(ctx, &ask.rid, command).await
}

/// The caller's view of the friend graph, from their shard.
pub async fn friend_list(
    ctx: &Context,
    user: &str,
) -> Result<FriendList, dolphin_sequencer::ShardError> {
    let query = Query::Friends { user: user.to_owned() };
    match ctx.backend.query(&user_key(user), query).await? {
        Answer::Friends { list } => Ok(list),
        _ => Err(dolphin_sequencer::ShardError::Unavailable(
            "the shard answered another question".into(),
        )),
    }
}

/// `friend.list`.
pub async fn list(ctx: &Context, caller: &Caller, rid: String) -> ServerFrame {
    match friend_list(ctx, &caller.user).await {
        Ok(list) => ServerFrame::Friends(Friends {
            rid,
            friends: list.friends,
            incoming: list.incoming,
            outgoing: list.outgoing,
        }),
        Err(error) => unavailable(&rid, &error),
    }
}

/// `moment.feed`: the newest moments of the caller and their friends (or of one of them),
/// merged from the authors' shards.
pub async fn feed(ctx: &Context, caller: &Caller, feed: MomentFeed) -> ServerFrame {
    let rid = feed.rid;
    let limit = feed.limit.unwrap_or(DEFAULT_FEED_LIMIT);
    let friends = match friend_list(ctx, &caller.user).await {
        Ok(list) => list.friends,
        Err(error) => return unavailable(&rid, &error),
    };
    let authors: Vec<String> = match feed.user {
        Some(user) if user == caller.user || friends.contains(&user) => vec![user],
        Some(user) => {
            let message = format!("only friends of {user} see their moments");
            return ServerFrame::error(Some(rid), ErrorCode::NotFriends, message);
        }
        None => std::iter::once(caller.user.clone()).chain(friends).collect(),
    };

    // One query per shard, for all the authors it keeps.
    let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for author in authors {
        by_shard.entry(ctx.backend.shard_of(&user_key(&author))).or_default().push(author);
    }
    let asks = by_shard.into_values().map(|authors| {
        let key = user_key(&authors[0]);
        let query = Query::Moments {
            viewer: caller.user.clone(),
            authors,
            before: feed.before.clone(),
            limit,
        };
        async move { ctx.backend.query(&key, query).await }
    });
    let mut items = Vec::new();
    for answer in futures_util::future::join_all(asks).await {
        match answer {
            Ok(Answer::Moments { items: some }) => items.extend(some),
            Ok(_) => return internal(&rid),
            Err(error) => return unavailable(&rid, &error),
        }
    }
    // Ids order an author's moments by time; across authors the time part decides.
    let order = |id: &str| moments::parse_id(id).map(|p| p.order.to_owned()).unwrap_or_default();
    items.sort_by_cached_key(|item| std::cmp::Reverse((order(&item.id), item.author.clone())));
    items.truncate(limit as usize);
    ServerFrame::Feed(Feed { rid, items })
}
