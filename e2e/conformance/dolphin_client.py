"""A small Dolphin client written from the client protocol document (protocol.md) alone.

It speaks version 1 of the protocol over one WebSocket: it connects with a token and a device,
reads the `hello`, sends requests that carry a `rid` and waits for the one reply with that
`rid`, and keeps every other frame (the pushes: `msg`, `rejected`, `read`, `typing`, ...) in an
inbox that a caller can wait on. Frames are JSON text, or MessagePack binary when the connection
negotiated the `dolphin.v1.msgpack` subprotocol.

Every wait takes a timeout and a sentence saying what was awaited, so a hang ends in an error
that names what probably went wrong rather than in a silent stall.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode

import jwt
import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

MSGPACK_SUBPROTOCOL = "dolphin.v1.msgpack"

# A body is at most 64 KiB once JSON-encoded (protocol.md, "Sending").
MAX_BODY_BYTES = 64 * 1024

# Frame types the server sends on its own, never as the answer to a request. A frame of one of
# these types is a push even if it happened to carry a `rid`. (`moment` is not one: it is both
# the reply to `moment.post` and, without a rid, the push of a like or a comment.)
PUSH_TYPES = frozenset({"hello", "msg", "rejected", "read", "typing", "friend"})

DEFAULT_TIMEOUT_S = 5.0

Frame = dict[str, Any]


class ProtocolError(Exception):
    """The server sent something the protocol does not allow, or did not send what it must."""


class HandshakeRejected(Exception):
    """The server refused the WebSocket upgrade with an HTTP status instead of 101."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the upgrade was refused with HTTP {status}")
        self.status = status


def direct_conv(a: str, b: str) -> str:
    """The id of the direct conversation of two users: `d:<a>:<b>`, the ids sorted bytewise."""
    first, second = sorted([a, b], key=lambda user: user.encode())
    return f"d:{first}:{second}"


def body_size(body: Any) -> int:
    """The size of a body as the 64 KiB limit counts it: compact JSON in UTF-8.

    NOTE: protocol.md says "a JSON-encoded body is at most 64 KiB" without naming the encoding
    (separators, escaping of non-ASCII). This assumes the compact form, the smallest one.
    """
    return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())


def new_id(prefix: str) -> str:
    """A fresh id of `[A-Za-z0-9_.@-]`, short enough for the 64-character limit on ids."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class Server:
    """Where a Dolphin server listens and the HS256 secret it verifies tokens with."""

    url: str
    secret: str

    def token(self, user: str, *, ttl_s: int = 3600, secret: str | None = None) -> str:
        """An HS256 token whose `sub` is USER, valid for TTL_S seconds (negative: expired)."""
        now = int(time.time())
        claims = {"sub": user, "iat": min(now, now + ttl_s), "exp": now + ttl_s}
        return jwt.encode(claims, secret or self.secret, algorithm="HS256")

    async def connect(
        self,
        user: str,
        device: str | None = None,
        *,
        token: str | None = None,
        via: str = "query",
        use_msgpack: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> Connection:
        """Opens a connection as USER on DEVICE and reads its `hello`.

        VIA is where the token goes: "query" (the `token` parameter), "header" (an
        `Authorization: Bearer` header) or "none". A DEVICE of None sends no `device` parameter.
        Raises HandshakeRejected when the server answers the upgrade with an HTTP error.
        """
        if token is None and via != "none":
            token = self.token(user)

        params: dict[str, str] = {}
        headers: dict[str, str] = {}
        if via == "query":
            params["token"] = token or ""
        elif via == "header":
            headers["Authorization"] = f"Bearer {token}"
        if device is not None:
            params["device"] = device
        url = f"{self.url}/v1/ws"
        if params:
            url += "?" + urlencode(params)

        subprotocols = [MSGPACK_SUBPROTOCOL] if use_msgpack else None
        try:
            ws = await asyncio.wait_for(
                connect(
                    url,
                    additional_headers=headers,
                    subprotocols=subprotocols,
                    max_size=16 * 1024 * 1024,
                    open_timeout=timeout,
                ),
                timeout,
            )
        except InvalidStatus as error:
            raise HandshakeRejected(error.response.status_code) from error
        except asyncio.TimeoutError as error:
            raise ProtocolError(
                f"timed out after {timeout}s opening {url}: is the server up?"
            ) from error

        conn = Connection(ws, user=user)
        conn.start()
        conn.hello = await conn.next_push(
            lambda f: f.get("type") == "hello",
            what="the hello frame, which must be the server's first frame",
            timeout=timeout,
        )
        return conn


@dataclass
class Connection:
    """One open WebSocket of one device, with its pending requests and its inbox of pushes."""

    ws: ClientConnection
    user: str
    hello: Frame = field(default_factory=dict)
    # Every frame received, in order, with whether it arrived as a binary frame.
    received: list[tuple[Frame, bool]] = field(default_factory=list)
    # Pushes not yet taken by next_push, in arrival order.
    inbox: list[Frame] = field(default_factory=list)
    # Replies whose rid was not (or no longer) awaited: a second answer to one request, say.
    stray_replies: list[Frame] = field(default_factory=list)
    # Frames that could not be decoded, or came as text on a msgpack connection or vice versa.
    bad_frames: list[str] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    _pending: dict[str, asyncio.Future[Frame]] = field(default_factory=dict)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None
    _rids: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def uses_msgpack(self) -> bool:
        return self.ws.subprotocol == MSGPACK_SUBPROTOCOL

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read_loop())

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, DEFAULT_TIMEOUT_S)
            except asyncio.TimeoutError:
                self._reader.cancel()

    def new_rid(self) -> str:
        return f"r{next(self._rids)}"

    async def send_frame(self, frame: Frame) -> None:
        """Sends FRAME as-is, in the encoding this connection negotiated."""
        if self.uses_msgpack:
            await self.ws.send(msgpack.packb(frame, use_bin_type=True))
        else:
            await self.ws.send(json.dumps(frame))

    async def request(
        self, frame: Frame, *, what: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> Frame:
        """Sends FRAME with a fresh `rid` (unless it has one) and returns the frame answering it."""
        frame = dict(frame)
        rid = frame.setdefault("rid", self.new_rid())
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        await self.send_frame(frame)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError as error:
            raise ProtocolError(
                f"timed out after {timeout}s waiting for the reply to {what or frame['type']!r} "
                f"(rid {rid}) as {self.user}: the server probably dropped the request"
            ) from error
        finally:
            self._pending.pop(rid, None)

    async def next_push(
        self,
        match: Callable[[Frame], bool],
        *,
        what: str,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> Frame:
        """Removes and returns the oldest push in the inbox that MATCH accepts, waiting for one."""

        def take() -> Frame | None:
            for index, frame in enumerate(self.inbox):
                if match(frame):
                    return self.inbox.pop(index)
            return None

        async def wait() -> Frame:
            async with self._arrived:
                while True:
                    frame = take()
                    if frame is not None:
                        return frame
                    if self.closed.is_set():
                        raise ProtocolError(
                            f"the connection of {self.user} closed while waiting for {what}"
                        )
                    await self._arrived.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError as error:
            seen = [f.get("type") for f in self.inbox]
            raise ProtocolError(
                f"timed out after {timeout}s waiting for {what} on a connection of {self.user}; "
                f"pushes waiting in its inbox: {seen}"
            ) from error

    def pushes(self, match: Callable[[Frame], bool]) -> list[Frame]:
        """The pushes in the inbox that MATCH accepts, left in place."""
        return [frame for frame in self.inbox if match(frame)]

    async def _read_loop(self) -> None:
        try:
            async for data in self.ws:
                frame = self._decode(data)
                if frame is not None:
                    await self._dispatch(frame, isinstance(data, bytes))
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            async with self._arrived:
                self._arrived.notify_all()

    def _decode(self, data: str | bytes) -> Frame | None:
        try:
            if isinstance(data, bytes):
                frame = msgpack.unpackb(data, raw=False)
            else:
                frame = json.loads(data)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
            self.bad_frames.append(f"undecodable frame {data[:200]!r}: {error}")
            return None
        if not isinstance(frame, dict):
            self.bad_frames.append(f"a frame that is not an object: {data[:200]!r}")
            return None
        if isinstance(data, bytes) != self.uses_msgpack:
            kind = "binary" if isinstance(data, bytes) else "text"
            self.bad_frames.append(
                f"a {kind} frame on a connection with subprotocol {self.ws.subprotocol}"
            )
        return frame

    async def _dispatch(self, frame: Frame, binary: bool) -> None:
        self.received.append((frame, binary))
        rid = frame.get("rid")
        if isinstance(rid, str) and frame.get("type") not in PUSH_TYPES:
            future = self._pending.get(rid)
            if future is not None and not future.done():
                future.set_result(frame)
            else:
                self.stray_replies.append(frame)
            return
        async with self._arrived:
            self.inbox.append(frame)
            self._arrived.notify_all()


class Client:
    """Convenience calls over a Connection, named after the protocol's requests."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.user = conn.user

    async def send(self, conv: str, body: Any, *, cid: str | None = None) -> tuple[str, Frame]:
        """Sends BODY to CONV; returns the cid used and the reply (`accepted` or `error`)."""
        cid = new_id("c") if cid is None else cid
        reply = await self.conn.request({"type": "send", "conv": conv, "cid": cid, "body": body})
        return cid, reply

    async def send_text(self, conv: str, text: str, *, cid: str | None = None) -> tuple[str, Frame]:
        return await self.send(conv, {"kind": "text", "text": text}, cid=cid)

    async def next_msg(self, conv: str, cid: str | None = None, *, what: str = "") -> Frame:
        """Waits for the `msg` push of CONV (with CID, if given)."""

        def match(frame: Frame) -> bool:
            return (
                frame.get("type") == "msg"
                and frame.get("conv") == conv
                and (cid is None or frame.get("cid") == cid)
            )

        label = what or f"the msg push of cid {cid} in {conv}"
        return await self.conn.next_push(match, what=label)

    async def next_system(self, conv: str, event: str) -> Frame:
        """Waits for the `msg` push of the system message EVENT in CONV."""

        def match(frame: Frame) -> bool:
            body = frame.get("body")
            return (
                frame.get("type") == "msg"
                and frame.get("conv") == conv
                and isinstance(body, dict)
                and body.get("kind") == "system"
                and body.get("event") == event
            )

        return await self.conn.next_push(match, what=f"the system message {event!r} in {conv}")

    async def fetch(self, conv: str, **params: Any) -> Frame:
        return await self.conn.request({"type": "fetch", "conv": conv, **params})

    async def sync(self, **params: Any) -> Frame:
        return await self.conn.request({"type": "sync", **params})

    async def sync_all(self, limit: int = 500, max_pages: int = 100) -> list[Frame]:
        """Every item of every `sync` page, following `next` until it is null."""
        items: list[Frame] = []
        params: dict[str, Any] = {"limit": limit}
        for _ in range(max_pages):
            reply = await self.sync(**params)
            if reply.get("type") != "conversations":
                raise ProtocolError(f"sync answered {reply}")
            items.extend(reply["items"])
            if reply["next"] is None:
                return items
            params = {"limit": limit, "cursor": reply["next"]}
        raise ProtocolError(f"sync still had a next cursor after {max_pages} pages")

    async def read(self, conv: str, seq: int) -> Frame:
        return await self.conn.request({"type": "read", "conv": conv, "seq": seq})

    async def recall(self, conv: str, seq: int) -> Frame:
        return await self.conn.request({"type": "recall", "conv": conv, "seq": seq})

    async def typing(self, conv: str) -> None:
        # `typing` is the one client frame without a rid, and it gets no reply.
        await self.conn.send_frame({"type": "typing", "conv": conv})

    async def group_create(self, title: str, members: list[str]) -> Frame:
        return await self.conn.request({"type": "group.create", "title": title, "members": members})

    async def group_add(self, conv: str, members: list[str]) -> Frame:
        return await self.conn.request({"type": "group.add", "conv": conv, "members": members})

    async def group_remove(self, conv: str, members: list[str]) -> Frame:
        return await self.conn.request({"type": "group.remove", "conv": conv, "members": members})

    async def group_leave(self, conv: str) -> Frame:
        return await self.conn.request({"type": "group.leave", "conv": conv})

    async def group_info(self, conv: str) -> Frame:
        return await self.conn.request({"type": "group.info", "conv": conv})

    async def friend_invite(self) -> Frame:
        return await self.conn.request({"type": "friend.invite"})

    async def friend_request(self, *, code: str | None = None, user: str | None = None) -> Frame:
        """Asks for friendship by scan CODE or by USER id (whichever is given)."""
        frame: Frame = {"type": "friend.request"}
        if code is not None:
            frame["code"] = code
        if user is not None:
            frame["user"] = user
        return await self.conn.request(frame)

    async def friend_accept(self, user: str) -> Frame:
        return await self.conn.request({"type": "friend.accept", "user": user})

    async def friend_remove(self, user: str) -> Frame:
        return await self.conn.request({"type": "friend.remove", "user": user})

    async def friend_list(self) -> Frame:
        return await self.conn.request({"type": "friend.list"})

    async def next_friend(self, event: str, user: str | None = None) -> Frame:
        """Waits for the `friend` push of EVENT (naming USER, if given)."""

        def match(frame: Frame) -> bool:
            return (
                frame.get("type") == "friend"
                and frame.get("event") == event
                and (user is None or frame.get("user") == user)
            )

        return await self.conn.next_push(match, what=f"the friend {event!r} push of {user}")

    async def moment_post(self, body: Any) -> Frame:
        return await self.conn.request({"type": "moment.post", "body": body})

    async def moment_feed(self, limit: int, before: Any = None) -> Frame:
        frame: Frame = {"type": "moment.feed", "limit": limit}
        if before is not None:
            frame["before"] = before
        return await self.conn.request(frame)

    async def moment_like(self, moment: Any) -> Frame:
        return await self.conn.request({"type": "moment.like", "id": moment})

    async def moment_comment(self, moment: Any, text: str) -> Frame:
        return await self.conn.request({"type": "moment.comment", "id": moment, "text": text})
