"""Fixtures of the conformance suite: the server under test, fresh users, and an async runner.

The server is started by run.sh, which passes its address as DOLPHIN_URL (ws://host:port) and
its HS256 secret as DOLPHIN_JWT_SECRET. Every test makes its own users with a random suffix, so
tests neither see nor disturb each other's conversations on the one shared server.

Tests are `async def` functions. pytest alone cannot run those, and the suite pins only pytest,
websockets, PyJWT and msgpack, so the hook below runs each one with asyncio.run, under an
overall timeout, and closes the test's connections at its end.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid
from collections import defaultdict
from typing import Any, Callable

import pytest

from dolphin_client import DEFAULT_TIMEOUT_S, Client, Connection, Frame, ProtocolError, Server

# A test that runs this long is stuck somewhere no inner timeout covers.
TEST_TIMEOUT_S = 60.0

# How long a test watches a connection to show that a push does NOT come. Only used after a
# positive barrier (another connection got the same fan-out), so a late push is very unlikely.
# NOTE: a negative check cannot be proven by waiting; a slower server could still send the push
# after the window and the test would pass. Only a protocol-level barrier would lift that.
QUIET_WINDOW_S = 0.5


@pytest.fixture(scope="session")
def server() -> Server:
    url = os.environ.get("DOLPHIN_URL")
    secret = os.environ.get("DOLPHIN_JWT_SECRET")
    if not url or not secret:
        pytest.fail("DOLPHIN_URL and DOLPHIN_JWT_SECRET are not set: run the suite with run.sh")
    return Server(url=url.rstrip("/"), secret=secret)


class Harness:
    """Opens connections for one test, hands out fresh user ids, and checks them at the end."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.connections: list[Connection] = []
        self.suffix = uuid.uuid4().hex[:10]

    def user(self, name: str) -> str:
        """A user id unique to this test, e.g. alice-3f9c0a1b2d."""
        return f"{name}-{self.suffix}"

    async def open(self, user: str, device: str | None = "d1", **kwargs: Any) -> Client:
        conn = await self.server.connect(user, device, **kwargs)
        self.connections.append(conn)
        return Client(conn)

    async def quiet(self, client: Client, match: Callable[[Frame], bool], what: str) -> None:
        """Fails if a push that MATCH accepts arrives at CLIENT within the quiet window."""
        try:
            frame = await client.conn.next_push(match, what=what, timeout=QUIET_WINDOW_S)
        except ProtocolError:
            return
        pytest.fail(f"{client.user} got {what}, which it must not: {frame}")

    async def close(self) -> None:
        for conn in self.connections:
            try:
                await asyncio.wait_for(conn.close(), DEFAULT_TIMEOUT_S)
            except (asyncio.TimeoutError, OSError):
                pass

    def check(self) -> None:
        """Checks what holds on every connection whatever the test did.

        - every request is answered by exactly one frame with its rid ("Requests and replies");
        - frames are JSON text, or MessagePack binary on a `dolphin.v1.msgpack` connection;
        - pushes of `msg` come in seq order per conversation per connection, repeats aside
          (guarantee 5).
        """
        problems: list[str] = []
        for conn in self.connections:
            problems += [f"{conn.user}: a second or unasked reply {f}" for f in conn.stray_replies]
            problems += [f"{conn.user}: {bad}" for bad in conn.bad_frames]

            last: dict[str, int] = defaultdict(int)
            seen: set[tuple[str, int]] = set()
            for frame, _ in conn.received:
                if frame.get("type") != "msg" or frame.get("rid") is not None:
                    continue
                key = (frame["conv"], frame["seq"])
                if key in seen:
                    continue
                seen.add(key)
                if frame["seq"] < last[frame["conv"]]:
                    problems.append(
                        f"{conn.user}: msg seq {frame['seq']} of {frame['conv']} pushed after "
                        f"seq {last[frame['conv']]}"
                    )
                last[frame["conv"]] = frame["seq"]
        assert not problems, "\n".join(problems)


@pytest.fixture
def dolphin(server: Server) -> Harness:
    return Harness(server)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None

    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    harness = kwargs.get("dolphin")

    async def run() -> None:
        try:
            await asyncio.wait_for(pyfuncitem.obj(**kwargs), TEST_TIMEOUT_S)
        except asyncio.TimeoutError as error:
            raise AssertionError(
                f"the test ran past {TEST_TIMEOUT_S}s: a wait without its own timeout hung"
            ) from error
        finally:
            if isinstance(harness, Harness):
                await harness.close()

    asyncio.run(run())
    if isinstance(harness, Harness):
        harness.check()
    return True
