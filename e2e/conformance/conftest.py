"""Fixtures of the conformance suite: the server under test, fresh users, and an async runner.

The server is started by run.sh, which passes its address as DOLPHIN_URL (ws://host:port) and
its HS256 secret as DOLPHIN_JWT_SECRET. Every test makes its own users with a random suffix, so
tests neither see nor disturb each other's conversations on the one shared server.

The tests of the `directMessages: friends` policy need a second server with that setting. The
`friends_only` fixture starts it the first time a test asks for it: `dolphin dev --direct-messages
friends` from DOLPHIN_BIN (which run.sh passes on), on a free port with a temporary data folder,
stopped and removed at the end of the session. DOLPHIN_FRIENDS_URL and DOLPHIN_FRIENDS_JWT_SECRET
name an already running one instead.

Tests are `async def` functions. pytest alone cannot run those, and the suite pins only pytest,
websockets, PyJWT and msgpack, so the hook below runs each one with asyncio.run, under an
overall timeout, and closes the test's connections at its end.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from dolphin_client import DEFAULT_TIMEOUT_S, Client, Connection, Frame, ProtocolError, Server

# A test that runs this long is stuck somewhere no inner timeout covers.
TEST_TIMEOUT_S = 60.0

# How long a test watches a connection to show that a push does NOT come. Only used after a
# positive barrier (another connection got the same fan-out), so a late push is very unlikely.
# NOTE: a negative check cannot be proven by waiting; a slower server could still send the push
# after the window and the test would pass. Only a protocol-level barrier would lift that.
QUIET_WINDOW_S = 0.5

# Generous because a debug build opens its shards and elects their Raft leaders before serving
# (the same bound as run.sh's).
HEALTH_TIMEOUT_S = 60.0
# A second server that ignores SIGTERM this long gets SIGKILL.
STOP_TIMEOUT_S = 10.0


@pytest.fixture(scope="session")
def server() -> Server:
    url = os.environ.get("DOLPHIN_URL")
    secret = os.environ.get("DOLPHIN_JWT_SECRET")
    if not url or not secret:
        pytest.fail("DOLPHIN_URL and DOLPHIN_JWT_SECRET are not set: run the suite with run.sh")
    return Server(url=url.rstrip("/"), secret=secret)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, drawn as run.sh draws its own.

    Below Linux's ephemeral range (32768+), so an outgoing connection cannot take it before the
    server binds it.
    """
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("found no free TCP port on 127.0.0.1 after 200 tries")


def healthz_status(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@pytest.fixture(scope="session")
def friends_only_server() -> Iterator[Server]:
    """A server whose direct messages need friendship (`--direct-messages friends`)."""
    url = os.environ.get("DOLPHIN_FRIENDS_URL")
    secret = os.environ.get("DOLPHIN_FRIENDS_JWT_SECRET")
    if url and secret:
        yield Server(url=url.rstrip("/"), secret=secret)
        return
    binary = os.environ.get("DOLPHIN_BIN")
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail(
            f"no server binary to start a friends-only server (DOLPHIN_BIN={binary!r}): run the "
            "suite with run.sh, or set DOLPHIN_FRIENDS_URL and DOLPHIN_FRIENDS_JWT_SECRET"
        )

    folder = Path(tempfile.mkdtemp(prefix="dolphin-conformance-friends."))
    port = free_port()
    log_path = folder / "server.log"
    command = [binary, "dev", "--listen", f"127.0.0.1:{port}", "--data", str(folder / "data")]
    command += ["--direct-messages", "friends"]
    # The suite's own DOLPHIN_* variables stay out of the server's environment: the server reads
    # its settings from variables of that prefix too (DOLPHIN_JWT_SECRET would replace the
    # secret it writes into its data folder, which is read below).
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOLPHIN_")}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while healthz_status(port) != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace").splitlines()[-20:]
                state = "exited" if process.poll() is not None else "did not answer /healthz"
                pytest.fail(
                    f"the friends-only server ({' '.join(command)}) {state} within "
                    f"{HEALTH_TIMEOUT_S}s; its log's last lines:\n" + "\n".join(tail)
                )
            # Readiness polling of another process, not synchronisation between tests.
            time.sleep(0.2)
        secret_text = (folder / "data" / "jwt-secret").read_text().strip()
        yield Server(url=f"ws://127.0.0.1:{port}", secret=secret_text)
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


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


@pytest.fixture
def friends_only(friends_only_server: Server) -> Harness:
    """Like `dolphin`, on the server whose direct messages need friendship."""
    return Harness(friends_only_server)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None

    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    harnesses = [value for value in kwargs.values() if isinstance(value, Harness)]

    async def run() -> None:
        try:
            await asyncio.wait_for(pyfuncitem.obj(**kwargs), TEST_TIMEOUT_S)
        except asyncio.TimeoutError as error:
            raise AssertionError(
                f"the test ran past {TEST_TIMEOUT_S}s: a wait without its own timeout hung"
            ) from error
        finally:
            for harness in harnesses:
                await harness.close()

    asyncio.run(run())
    for harness in harnesses:
        harness.check()
    return True
