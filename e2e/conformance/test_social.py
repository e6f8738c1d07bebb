"""Conformance of a Dolphin server to the social part of protocol.md, version 1.

It covers "Friends and scan codes" (friend.invite, friend.request by code and by user,
friend.accept, friend.remove, friend.list, the pushes of `friend` events, and the
`directMessages: friends` policy) and "Dynamics (moments)" (moment.post, moment.feed with
`limit` and `before`, moment.like, moment.comment and their pushes to the author).

As in test_protocol.py, each test checks one promise of the document, quoted or paraphrased in
its docstring, and is written from the document alone; where the document can be read two ways,
the test follows the most literal reading and says so in a comment starting "AMBIGUITY:". Shape
checks require the documented fields and allow extra ones.

The policy tests need a server whose direct messages need friendship; the `friends_only`
fixture (conftest.py) starts one beside the server run.sh starts, which has the default policy.
"""

from __future__ import annotations

import asyncio
import random
import string
import time
import xml.etree.ElementTree as ElementTree
from typing import Any, Callable

import pytest

from conftest import Harness
from dolphin_client import Client, Frame, direct_conv, new_id
from test_protocol import ERROR_CODES, assert_accepted, assert_reply, assert_ts, text

LINK_PREFIX = "dolphin://add-friend/"
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
ITEM_FIELDS = ("id", "author", "ts", "body", "likes", "comments")

# The document promises own writes for messages only (guarantee 7), not for friendships: a
# friend.list may lag the `ok` or the push that announced a change. A test that needs a list to
# show a change polls it for at most this long, every POLL_INTERVAL_S.
LIST_DEADLINE_S = 5.0
POLL_INTERVAL_S = 0.05

# The characters of user ids, and of the base64url alphabet a forged code is drawn from.
CODE_ALPHABET = string.ascii_letters + string.digits + "-_"


# -- helpers ----------------------------------------------------------------------------------


def assert_any_error(reply: Frame, rid: str) -> None:
    """REPLY is an `error` with RID and one of the document's codes."""
    assert reply.get("type") == "error", f"expected an error reply to rid {rid}, got {reply}"
    assert reply.get("rid") == rid, f"the error does not carry rid {rid}: {reply}"
    assert reply.get("code") in ERROR_CODES, f"the error code is not one of the list: {reply}"
    assert isinstance(reply.get("message"), str), f"an error carries a human message: {reply}"


def user_ids(entries: Any, what: str) -> list[str]:
    """The user ids of a friend.list list.

    AMBIGUITY: `"friends":[..]` does not say what an entry is. The literal reading of a list of
    friends is a list of user ids; an object naming its user in a `user` field is accepted too.
    """
    assert isinstance(entries, list), f"{what} is not a list: {entries!r}"
    ids = []
    for entry in entries:
        if isinstance(entry, dict):
            entry = entry.get("user")
        assert isinstance(entry, str), f"an entry of {what} names no user: {entries!r}"
        ids.append(entry)
    return ids


async def friend_lists(client: Client) -> dict[str, list[str]]:
    """CLIENT's friend.list, checked for its shape, as {"friends": [ids], ...}."""
    reply = await client.friend_list()
    assert_reply(reply, "friends")
    return {key: user_ids(reply.get(key), key) for key in ("friends", "incoming", "outgoing")}


async def lists_until(
    client: Client, want: Callable[[dict[str, list[str]]], bool], what: str
) -> dict[str, list[str]]:
    """Polls CLIENT's friend.list until WANT holds of it, for at most LIST_DEADLINE_S."""
    deadline = time.monotonic() + LIST_DEADLINE_S
    while True:
        lists = await friend_lists(client)
        if want(lists):
            return lists
        if time.monotonic() > deadline:
            pytest.fail(
                f"friend.list of {client.user} did not show {what} within {LIST_DEADLINE_S}s; "
                f"it last showed {lists}"
            )
        # A bounded retry interval of a poll, not a synchronisation by sleeping.
        await asyncio.sleep(POLL_INTERVAL_S)


async def befriend(requester: Client, accepter: Client) -> None:
    """Makes the two users friends (request by user, accept) and waits until both lists agree."""
    assert_reply(await requester.friend_request(user=accepter.user), "ok")
    await accepter.next_friend("request", requester.user)
    assert_reply(await accepter.friend_accept(requester.user), "ok")
    for client, other in ((requester, accepter), (accepter, requester)):
        await client.next_friend("accepted")
        await lists_until(
            client, lambda lists: other.user in lists["friends"], f"{other.user} as a friend"
        )


def tamper(code: str) -> str:
    """CODE with one character in the middle of its signature part changed.

    The signature part is what follows the last "." (the whole code if there is none). The middle
    one is changed, not the last one: the last character of base64url text may carry only
    padding bits, which a lenient decoder ignores, so changing it could leave the code valid.
    """
    start = code.rfind(".") + 1
    index = start + (len(code) - start) // 2
    replacement = "B" if code[index] == "A" else "A"
    return code[:index] + replacement + code[index + 1 :]


def forged_like(code: str) -> str:
    """A code of CODE's shape (same parts, same lengths) drawn at random."""
    return ".".join(
        "".join(random.choice(CODE_ALPHABET) for _ in part) for part in code.split(".")
    )


def count_of(value: Any, what: str) -> int:
    """How many likes or comments VALUE holds.

    AMBIGUITY: a feed item's `likes` and `comments` are named but not described: a number or a
    list of the likes or comments both fit, so both are accepted.
    """
    if isinstance(value, list):
        return len(value)
    assert isinstance(value, int) and not isinstance(value, bool), f"{what} is {value!r}"
    return value


def assert_moment_id(value: Any) -> None:
    # AMBIGUITY: `"id":..` names no type; a non-empty string or an integer is accepted.
    ok = (isinstance(value, str) and value) or (
        isinstance(value, int) and not isinstance(value, bool)
    )
    assert ok, f"a moment id is neither a non-empty string nor an integer: {value!r}"


async def post(client: Client, value: str) -> Frame:
    """Posts a text moment, checks the reply is `moment`, and returns it."""
    reply = await client.moment_post(text(value))
    assert_reply(reply, "moment")
    assert_moment_id(reply.get("id"))
    return reply


async def feed(client: Client, limit: int = 100, before: Any = None) -> list[Frame]:
    """The items of one moment.feed page of CLIENT, each checked for the documented fields."""
    reply = await client.moment_feed(limit, before)
    assert_reply(reply, "feed")
    items = reply.get("items")
    assert isinstance(items, list), f"feed items is not a list: {reply}"
    for item in items:
        missing = [name for name in ITEM_FIELDS if name not in item]
        assert not missing, f"a feed item lacks {missing}: {item}"
    return items


def is_moment_event(event: str) -> Callable[[Frame], bool]:
    return lambda f: f.get("type") == "moment" and f.get("event") == event and "rid" not in f


# -- friend.invite ----------------------------------------------------------------------------


async def test_friend_invite_replies_invite_with_a_code_a_dolphin_link_and_an_svg_qr_code(
    dolphin: Harness,
):
    """friend.invite replies `{"type":"invite","rid":..,"code":"..",
    "link":"dolphin://add-friend/..","qr_svg":"<svg ..>"}`."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")

    reply = await alice.conn.request({"type": "friend.invite", "rid": "r8"})

    assert_reply(reply, "invite", "r8")
    assert isinstance(reply.get("code"), str) and reply["code"], f"no code: {reply}"
    link = reply.get("link")
    assert isinstance(link, str) and link.startswith(LINK_PREFIX), f"link: {link!r}"
    # AMBIGUITY: the `..` of the link is not said to be the code; only that something follows.
    assert len(link) > len(LINK_PREFIX), f"the link names nothing after its prefix: {link!r}"
    svg = reply.get("qr_svg")
    assert isinstance(svg, str), f"qr_svg is not a string: {reply}"
    root = ElementTree.fromstring(svg)
    assert root.tag in (f"{{{SVG_NAMESPACE}}}svg", "svg"), f"qr_svg's root is {root.tag}"


async def test_the_invite_qr_svg_begins_with_the_svg_element(dolphin: Harness):
    """The document shows `"qr_svg":"<svg ..>"`: the value begins with the svg element."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")

    reply = await alice.friend_invite()

    # AMBIGUITY: an SVG file may start with an XML declaration; the example's value starts with
    # `<svg`, and that, the literal reading, is what a client that inlines the value relies on.
    assert_reply(reply, "invite")
    assert reply["qr_svg"].startswith("<svg"), f"qr_svg begins {reply['qr_svg'][:60]!r}"


async def test_each_user_gets_its_own_code(dolphin: Harness):
    """"The code ... names its user": two users' codes differ."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob = await dolphin.open(dolphin.user("bob"), "phone")

    codes = {(await client.friend_invite())["code"] for client in (alice, bob)}

    assert len(codes) == 2, f"alice and bob got the same code: {codes}"


# -- friend.request and its push ------------------------------------------------------------


async def test_friend_request_by_code_pushes_a_request_to_every_device_of_the_codes_user(
    dolphin: Harness,
):
    """Scanning the code and sending friend.request {code} pushes
    `{"type":"friend","event":"request","user":..}` to the other side (the code's user)."""
    alice_id = dolphin.user("alice")
    alice_phone = await dolphin.open(alice_id, "phone")
    alice_laptop = await dolphin.open(alice_id, "laptop")
    bob = await dolphin.open(dolphin.user("bob"), "phone")
    code = (await alice_phone.friend_invite())["code"]

    reply = await bob.conn.request({"type": "friend.request", "rid": "r9", "code": code})

    # AMBIGUITY: the document names no reply for friend.request; `ok` is the generic reply of
    # "Requests and replies" and is what is expected.
    assert_reply(reply, "ok", "r9")
    # AMBIGUITY: "the other side" does not say which devices; as for `msg`, every device.
    for device in (alice_phone, alice_laptop):
        push = await device.next_friend("request", bob.user)
        assert (push["type"], push["event"], push["user"]) == ("friend", "request", bob.user)


async def test_friend_request_by_user_pushes_a_request_to_every_device_of_that_user(
    dolphin: Harness,
):
    """friend.request {user} pushes `{"type":"friend","event":"request","user":..}` to the
    other side, naming the requester."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob_id = dolphin.user("bob")
    bob_phone = await dolphin.open(bob_id, "phone")
    bob_laptop = await dolphin.open(bob_id, "laptop")

    reply = await alice.conn.request({"type": "friend.request", "rid": "r10", "user": bob_id})

    assert_reply(reply, "ok", "r10")
    for device in (bob_phone, bob_laptop):
        push = await device.next_friend("request", alice.user)
        assert (push["type"], push["event"], push["user"]) == ("friend", "request", alice.user)


async def test_a_request_to_a_user_who_is_offline_shows_in_their_incoming_list(dolphin: Harness):
    """friend.request {user} needs no online device of that user: it is a pending incoming
    request in their friend.list when they come."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob_id = dolphin.user("bob")

    assert_reply(await alice.friend_request(user=bob_id), "ok")

    bob = await dolphin.open(bob_id, "phone")
    await lists_until(bob, lambda lists: alice.user in lists["incoming"], "alice's request")


# -- friend.accept ----------------------------------------------------------------------------


async def test_friend_accept_pushes_accepted_to_every_device_of_both_users(dolphin: Harness):
    """friend.accept {user} "makes both friends and pushes event:"accepted" to both"."""
    alice_id, bob_id = dolphin.user("alice"), dolphin.user("bob")
    alice_phone = await dolphin.open(alice_id, "phone")
    alice_laptop = await dolphin.open(alice_id, "laptop")
    bob_phone = await dolphin.open(bob_id, "phone")
    bob_laptop = await dolphin.open(bob_id, "laptop")
    assert_reply(await alice_phone.friend_request(user=bob_id), "ok")
    await bob_phone.next_friend("request", alice_id)

    reply = await bob_phone.conn.request({"type": "friend.accept", "rid": "r11", "user": alice_id})

    # AMBIGUITY: no reply is named for friend.accept; `ok`, the generic one, is expected. Nor
    # does the document say what else the push holds (its `user`), so type and event are checked.
    assert_reply(reply, "ok", "r11")
    for device in (alice_phone, alice_laptop, bob_phone, bob_laptop):
        push = await device.next_friend("accepted")
        assert push["type"] == "friend" and push["event"] == "accepted", push


async def test_friend_accept_makes_both_users_friends_of_each_other(dolphin: Harness):
    """friend.accept "makes both friends": each is in the other's `friends` list, and the
    request is no longer pending on either side."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob = await dolphin.open(dolphin.user("bob"), "phone")

    await befriend(alice, bob)

    for client, other in ((alice, bob), (bob, alice)):
        lists = await friend_lists(client)
        assert lists["friends"] == [other.user], f"{client.user}: {lists}"
        assert other.user not in lists["incoming"] + lists["outgoing"], f"{client.user}: {lists}"


async def test_a_request_by_code_accepted_makes_friends(dolphin: Harness):
    """The scan-code path end to end: invite, request {code}, accept {user} make friends."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob = await dolphin.open(dolphin.user("bob"), "phone")
    code = (await alice.friend_invite())["code"]

    assert_reply(await bob.friend_request(code=code), "ok")
    await alice.next_friend("request", bob.user)
    assert_reply(await alice.friend_accept(bob.user), "ok")

    await lists_until(alice, lambda lists: lists["friends"] == [bob.user], "bob as a friend")
    await lists_until(bob, lambda lists: lists["friends"] == [alice.user], "alice as a friend")


# -- friend.list ------------------------------------------------------------------------------


async def test_friend_list_replies_friends_with_three_lists_empty_for_a_new_user(
    dolphin: Harness,
):
    """friend.list replies `{"type":"friends","rid":..,"friends":[..],"incoming":[..],
    "outgoing":[..]}`."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")

    reply = await alice.conn.request({"type": "friend.list", "rid": "r12"})

    assert_reply(reply, "friends", "r12")
    for key in ("friends", "incoming", "outgoing"):
        assert reply.get(key) == [], f"{key} of a new user is not an empty list: {reply}"


async def test_a_pending_request_is_outgoing_for_the_requester_and_incoming_for_the_other(
    dolphin: Harness,
):
    """friend.list's `outgoing` holds the requests a user sent, `incoming` those it got; a
    request alone makes no friends."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob = await dolphin.open(dolphin.user("bob"), "phone")

    assert_reply(await alice.friend_request(user=bob.user), "ok")
    await bob.next_friend("request", alice.user)

    # Polled: the change may take a moment to show, even in the requester's own list (see
    # LIST_DEADLINE_S).
    mine = await lists_until(alice, lambda lists: bob.user in lists["outgoing"], "bob outgoing")
    theirs = await lists_until(bob, lambda lists: alice.user in lists["incoming"], "incoming")
    assert mine == {"friends": [], "incoming": [], "outgoing": [bob.user]}, mine
    assert theirs == {"friends": [], "incoming": [alice.user], "outgoing": []}, theirs


# -- friend.remove ----------------------------------------------------------------------------


async def test_friend_remove_ends_the_friendship_on_both_sides(dolphin: Harness):
    """friend.remove {user} undoes a friendship: neither lists the other as a friend."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob = await dolphin.open(dolphin.user("bob"), "phone")
    await befriend(alice, bob)

    reply = await alice.conn.request({"type": "friend.remove", "rid": "r13", "user": bob.user})

    # AMBIGUITY: no reply is named for friend.remove; `ok`, the generic one, is expected.
    assert_reply(reply, "ok", "r13")
    for client, other in ((alice, bob), (bob, alice)):
        lists = await lists_until(
            client, lambda lists: other.user not in lists["friends"], f"{other.user} gone"
        )
        assert lists == {"friends": [], "incoming": [], "outgoing": []}, f"{client.user}: {lists}"


# -- bad friend requests ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["random", "like a real code"])
async def test_a_forged_code_gets_an_error(dolphin: Harness, shape: str):
    """"The code is signed": a code the server did not sign is refused with an `error` reply."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob = await dolphin.open(dolphin.user("bob"), "phone")
    real = (await alice.friend_invite())["code"]
    forged = new_id("forged") if shape == "random" else forged_like(real)
    assert forged != real

    reply = await bob.conn.request({"type": "friend.request", "rid": "r-forged", "code": forged})

    # AMBIGUITY: the document names no code for a bad scan code; any code of its list is
    # accepted (`bad_request` or `not_found` fit), but the reply must be an `error`.
    assert_any_error(reply, "r-forged")


async def test_a_code_with_a_tampered_signature_gets_an_error_and_pushes_nothing(
    dolphin: Harness,
):
    """"The code is signed": a real code with one character of its signature changed is
    refused with an `error` reply, and its user hears nothing."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob = await dolphin.open(dolphin.user("bob"), "phone")
    carol = await dolphin.open(dolphin.user("carol"), "phone")
    code = (await alice.friend_invite())["code"]

    reply = await bob.conn.request(
        {"type": "friend.request", "rid": "r-tampered", "code": tamper(code)}
    )

    # AMBIGUITY: no code is named for a bad scan code; any of the list, but an `error`.
    assert_any_error(reply, "r-tampered")
    # A positive barrier first: carol's good request reaches alice, then bob's must not have.
    assert_reply(await carol.friend_request(code=code), "ok")
    await alice.next_friend("request", carol.user)
    await dolphin.quiet(alice, lambda f: f.get("user") == bob.user, "bob's friend request")


@pytest.mark.parametrize("by", ["user", "code"])
async def test_requesting_oneself_gets_an_error(dolphin: Harness, by: str):
    """A user cannot befriend itself: friend.request naming oneself (by user id, or by one's
    own scan code) gets an `error` reply."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    target = {"user": alice.user}
    if by == "code":
        target = {"code": (await alice.friend_invite())["code"]}

    reply = await alice.conn.request({"type": "friend.request", "rid": "r-self", **target})

    # AMBIGUITY: the document does not speak of requesting oneself; "the other side" implies
    # there is one, so an `error` (any code of the list, `bad_request` fits) is expected.
    assert_any_error(reply, "r-self")
    lists = await friend_lists(alice)
    assert alice.user not in lists["friends"] + lists["incoming"] + lists["outgoing"], lists


@pytest.mark.parametrize(
    "bad_user",
    ["", "x" * 65, "has space", "slash/y", "é"],
    ids=["empty", "65 characters", "a space", "a slash", "not ASCII"],
)
async def test_a_request_for_a_user_id_outside_the_rules_gets_an_error(
    dolphin: Harness, bad_user: str
):
    """"User ids: 1 to 64 characters of [A-Za-z0-9_.@-]": friend.request {user} with any other
    id is refused with an `error` reply."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")

    reply = await alice.conn.request({"type": "friend.request", "rid": "r-bad", "user": bad_user})

    # AMBIGUITY: no code is named; `bad_request` fits, any code of the list is accepted.
    assert_any_error(reply, "r-bad")
    assert (await friend_lists(alice))["outgoing"] == []


async def test_a_request_with_neither_code_nor_user_gets_an_error(dolphin: Harness):
    """friend.request takes {code} or {user}; with neither there is no other side."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")

    reply = await alice.conn.request({"type": "friend.request", "rid": "r-empty"})

    # AMBIGUITY: no code is named; `bad_request` fits, any code of the list is accepted.
    assert_any_error(reply, "r-empty")


# -- the directMessages policy ----------------------------------------------------------------


async def test_with_friends_only_a_direct_message_between_non_friends_is_rejected_with_not_friends(
    friends_only: Harness,
):
    """With `directMessages: friends`, "refused ones are rejected with not_friends": the send is
    `accepted`, then every device of the sender is pushed `rejected` with code `not_friends`."""
    alice_id = friends_only.user("alice")
    alice_phone = await friends_only.open(alice_id, "phone")
    alice_laptop = await friends_only.open(alice_id, "laptop")
    bob = await friends_only.open(friends_only.user("bob"), "phone")
    conv = direct_conv(alice_id, bob.user)

    cid, reply = await alice_phone.send_text(conv, "hello stranger")

    # "not friends" is one of the refusals of ordering ("Sending"), so it follows `accepted`.
    assert_accepted(reply, cid)
    for device in (alice_phone, alice_laptop):
        rejected = await device.conn.next_push(
            lambda f: f.get("type") == "rejected" and f.get("cid") == cid,
            what=f"the rejected push for cid {cid} on every device of the sender",
        )
        assert (rejected["conv"], rejected["code"]) == (conv, "not_friends"), rejected
        assert isinstance(rejected.get("message"), str), rejected
    await friends_only.quiet(bob, lambda f: f.get("type") == "msg", "a msg from a non-friend")


async def test_with_friends_only_a_pending_request_does_not_allow_direct_messages(
    friends_only: Harness,
):
    """Only friend.accept "makes both friends": a sent but unanswered request does not let the
    requester send direct messages."""
    alice = await friends_only.open(friends_only.user("alice"), "phone")
    bob = await friends_only.open(friends_only.user("bob"), "phone")
    assert_reply(await alice.friend_request(user=bob.user), "ok")
    await bob.next_friend("request", alice.user)
    await lists_until(alice, lambda lists: bob.user in lists["outgoing"], "bob outgoing")

    cid, reply = await alice.send_text(direct_conv(alice.user, bob.user), "please accept")

    assert_accepted(reply, cid)
    rejected = await alice.conn.next_push(
        lambda f: f.get("type") == "rejected" and f.get("cid") == cid, what="the rejected push"
    )
    assert rejected["code"] == "not_friends", rejected


async def test_with_friends_only_friends_direct_messages_are_delivered(friends_only: Harness):
    """With `directMessages: friends`, once two users are friends their direct messages are
    ordered and pushed to both as usual."""
    alice = await friends_only.open(friends_only.user("alice"), "phone")
    bob = await friends_only.open(friends_only.user("bob"), "phone")
    conv = direct_conv(alice.user, bob.user)
    await befriend(alice, bob)

    for sender, receiver in ((alice, bob), (bob, alice)):
        cid, reply = await sender.send_text(conv, f"hi from {sender.user}")
        assert_accepted(reply, cid)
        for client in (sender, receiver):
            push = await client.next_msg(conv, cid)
            assert push["body"] == text(f"hi from {sender.user}")
    assert not alice.conn.pushes(lambda f: f.get("type") == "rejected"), alice.conn.inbox


async def test_with_friends_only_a_removed_friends_direct_messages_are_rejected_again(
    friends_only: Harness,
):
    """After friend.remove the two are no longer friends, so with `directMessages: friends`
    their direct messages are `rejected` with `not_friends` again."""
    alice = await friends_only.open(friends_only.user("alice"), "phone")
    bob = await friends_only.open(friends_only.user("bob"), "phone")
    conv = direct_conv(alice.user, bob.user)
    await befriend(alice, bob)
    cid, reply = await alice.send_text(conv, "while friends")
    assert_accepted(reply, cid)
    await bob.next_msg(conv, cid)

    assert_reply(await bob.friend_remove(alice.user), "ok")
    await lists_until(alice, lambda lists: bob.user not in lists["friends"], "bob removed")
    cid, reply = await alice.send_text(conv, "after the removal")

    assert_accepted(reply, cid)
    rejected = await alice.conn.next_push(
        lambda f: f.get("type") == "rejected" and f.get("cid") == cid, what="the rejected push"
    )
    assert (rejected["conv"], rejected["code"]) == (conv, "not_friends"), rejected


async def test_with_friends_only_group_messages_need_no_friendship(friends_only: Harness):
    """The setting is about *direct* messages: in a group, members who are not friends still
    message each other."""
    alice = await friends_only.open(friends_only.user("alice"), "phone")
    bob = await friends_only.open(friends_only.user("bob"), "phone")
    group = await alice.group_create("Strangers", [bob.user])
    assert_reply(group, "group")

    cid, reply = await bob.send_text(group["conv"], "hello group")

    assert_accepted(reply, cid)
    push = await alice.next_msg(group["conv"], cid)
    assert push["body"] == text("hello group")


# -- moment.post ------------------------------------------------------------------------------


async def test_moment_post_replies_moment_with_the_rid_an_id_and_a_ts(dolphin: Harness):
    """moment.post {body} replies `{"type":"moment","rid":..,"id":..,"ts":..}`."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")

    reply = await alice.conn.request(
        {"type": "moment.post", "rid": "r14", "body": text("sunny today")}
    )

    assert_reply(reply, "moment", "r14")
    assert_moment_id(reply.get("id"))
    assert_ts(reply.get("ts"))
    assert "event" not in reply, f"the reply to moment.post is not a like or comment: {reply}"


async def test_each_moment_gets_its_own_id(dolphin: Harness):
    """A moment's `id` names it (like and comment take it), so two posts get two ids."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")

    ids = [(await post(alice, f"post {i}"))["id"] for i in range(3)]

    assert len(set(ids)) == 3, f"posts share an id: {ids}"


async def test_moment_post_without_a_body_gets_an_error(dolphin: Harness):
    """moment.post takes {body}; a post without one is refused with an `error` reply."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")

    reply = await alice.conn.request({"type": "moment.post", "rid": "r-nobody"})

    # AMBIGUITY: no code is named; `bad_request` fits, any code of the list is accepted.
    assert_any_error(reply, "r-nobody")
    assert await feed(alice) == [], "a refused post must not be in the feed"


# -- moment.feed ------------------------------------------------------------------------------


async def test_moment_feed_of_a_new_user_is_empty(dolphin: Harness):
    """moment.feed replies `{"type":"feed","rid":..,"items":[..]}`, with no item for a user
    who has no posts and no friends."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")

    reply = await alice.conn.request({"type": "moment.feed", "rid": "r15", "limit": 10})

    assert_reply(reply, "feed", "r15")
    assert reply.get("items") == [], reply


async def test_moment_feed_has_the_users_and_its_friends_posts_newest_first(dolphin: Harness):
    """moment.feed replies "with the posts of the user and its friends, newest first", each
    item {id, author, ts, body, likes, comments}."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob = await dolphin.open(dolphin.user("bob"), "phone")
    await befriend(alice, bob)
    posted = []
    for author, value in ((alice, "a1"), (bob, "b1"), (alice, "a2"), (bob, "b2")):
        posted.append((author.user, value, await post(author, value)))

    for reader in (alice, bob):
        items = await feed(reader, limit=50)

        # Newest first: each post was made after the previous one's reply.
        expected = [(author, text(value), reply["id"]) for author, value, reply in posted]
        got = [(item["author"], item["body"], item["id"]) for item in items]
        assert got == expected[::-1], f"the feed of {reader.user}"
        for item, (_, _, reply) in zip(items, posted[::-1]):
            assert item["ts"] == reply["ts"], f"the feed's ts differs from the reply's: {item}"
            assert count_of(item["likes"], "likes") == 0, item
            assert count_of(item["comments"], "comments") == 0, item
        stamps = [item["ts"] for item in items]
        assert stamps == sorted(stamps, reverse=True), f"ts not newest first: {stamps}"


async def test_moment_feed_leaves_out_the_posts_of_non_friends_even_friends_of_friends(
    dolphin: Harness,
):
    """The feed holds "the posts of the user and its friends": not those of a stranger, nor of a
    friend's friend, nor of someone who only sent a request."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob = await dolphin.open(dolphin.user("bob"), "phone")
    carol = await dolphin.open(dolphin.user("carol"), "phone")
    dave = await dolphin.open(dolphin.user("dave"), "phone")
    await befriend(alice, bob)
    await befriend(bob, carol)
    assert_reply(await dave.friend_request(user=alice.user), "ok")
    await alice.next_friend("request", dave.user)
    for author in (carol, dave):
        await post(author, f"by {author.user}")
    mine = await post(alice, "by alice")

    items = await feed(alice, limit=50)

    assert [item["id"] for item in items] == [mine["id"]], f"alice's feed: {items}"


async def test_moment_feed_returns_at_most_limit_items_the_newest(dolphin: Harness):
    """moment.feed {limit}: at most `limit` items, newest first."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    ids = [(await post(alice, f"post {i}"))["id"] for i in range(5)]

    items = await feed(alice, limit=2)

    assert [item["id"] for item in items] == ids[:-3:-1]


async def test_moment_feed_pages_back_with_before(dolphin: Harness):
    """moment.feed {before?, limit}: `before` pages back through older posts, newest first."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    ids = [(await post(alice, f"post {i}"))["id"] for i in range(5)]

    # AMBIGUITY: the document does not say what `before` holds. As `before` of fetch holds the
    # seq, the id of a message, of the oldest message a client has, it is read here as the `id`
    # of the oldest item a client has (an id is also what moment.like and moment.comment take).
    pages: list[list[Any]] = []
    cursor = None
    for _ in range(4):
        items = await feed(alice, limit=2, before=cursor)
        pages.append([item["id"] for item in items])
        if not items:
            break
        cursor = items[-1]["id"]

    newest_first = ids[::-1]
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5], []], pages


# -- moment.like and moment.comment -----------------------------------------------------------


async def test_moment_like_notifies_every_device_of_the_author(dolphin: Harness):
    """moment.like {id} "notifies the author with {"type":"moment","event":"like",..}"."""
    alice_id = dolphin.user("alice")
    alice_phone = await dolphin.open(alice_id, "phone")
    alice_laptop = await dolphin.open(alice_id, "laptop")
    bob = await dolphin.open(dolphin.user("bob"), "phone")
    await befriend(alice_phone, bob)
    moment = await post(alice_phone, "like me")

    reply = await bob.conn.request({"type": "moment.like", "rid": "r16", "id": moment["id"]})

    # AMBIGUITY: no reply is named for moment.like; `ok`, the generic one, is expected. Which
    # devices of the author are notified is not said; as for `msg`, every one. What else the
    # push holds is `..`, so only type and event are checked.
    assert_reply(reply, "ok", "r16")
    for device in (alice_phone, alice_laptop):
        await device.conn.next_push(is_moment_event("like"), what="the like notification")


async def test_moment_comment_notifies_every_device_of_the_author(dolphin: Harness):
    """moment.comment {id, text} "notifies the author with
    {"type":"moment","event":"comment",..}"."""
    alice_id = dolphin.user("alice")
    alice_phone = await dolphin.open(alice_id, "phone")
    alice_laptop = await dolphin.open(alice_id, "laptop")
    bob = await dolphin.open(dolphin.user("bob"), "phone")
    await befriend(alice_phone, bob)
    moment = await post(alice_phone, "comment on me")

    reply = await bob.conn.request(
        {"type": "moment.comment", "rid": "r17", "id": moment["id"], "text": "nice"}
    )

    # AMBIGUITY: as for moment.like: `ok`, every device, type and event only.
    assert_reply(reply, "ok", "r17")
    for device in (alice_phone, alice_laptop):
        await device.conn.next_push(is_moment_event("comment"), what="the comment notification")


async def test_the_feed_item_counts_the_likes_and_comments_of_a_post(dolphin: Harness):
    """A feed item's `likes` and `comments` are those of the post: after one like and two
    comments, the item shows one like and two comments."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob = await dolphin.open(dolphin.user("bob"), "phone")
    await befriend(alice, bob)
    moment = await post(alice, "count these")

    assert_reply(await bob.moment_like(moment["id"]), "ok")
    for remark in ("first", "second"):
        assert_reply(await bob.moment_comment(moment["id"], remark), "ok")
    for event in ("like", "comment", "comment"):
        await alice.conn.next_push(is_moment_event(event), what=f"the {event} notification")

    for reader in (alice, bob):
        (item,) = [item for item in await feed(reader) if item["id"] == moment["id"]]
        assert count_of(item["likes"], "likes") == 1, f"{reader.user} sees {item}"
        assert count_of(item["comments"], "comments") == 2, f"{reader.user} sees {item}"


@pytest.mark.parametrize("request_type", ["moment.like", "moment.comment"])
async def test_liking_or_commenting_an_unknown_moment_gets_an_error(
    dolphin: Harness, request_type: str
):
    """moment.like and moment.comment take the `id` of a post; an id that names no post is
    refused with an `error` reply, as there is no author to notify."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")

    frame = {"type": request_type, "rid": "r-unknown", "id": new_id("m"), "text": "hello?"}
    reply = await alice.conn.request(frame)

    # AMBIGUITY: no code is named; `not_found` fits, any code of the list is accepted.
    assert_any_error(reply, "r-unknown")


async def test_a_former_friends_posts_leave_the_feed_after_friend_remove(dolphin: Harness):
    """The feed holds the posts of the user and its *friends*: once friend.remove has ended a
    friendship, the other's posts are no longer in it."""
    alice = await dolphin.open(dolphin.user("alice"), "phone")
    bob = await dolphin.open(dolphin.user("bob"), "phone")
    await befriend(alice, bob)
    theirs = await post(bob, "by bob")
    assert theirs["id"] in [item["id"] for item in await feed(alice)]

    assert_reply(await alice.friend_remove(bob.user), "ok")
    await lists_until(alice, lambda lists: bob.user not in lists["friends"], "bob removed")

    assert [item["id"] for item in await feed(alice)] == [], "bob's post is still in the feed"
