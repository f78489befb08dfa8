"""Shared helpers for the Python interop scenarios (tests/tests/interop_python.rs).

A scenario reads where the server is from the environment, drives the real SDKs
(centrifuge-python for the real-time side, cent for the server API), and prints ONE JSON
object of observations on stdout; the Rust test asserts on it. Every wait is bounded: a
missed event fails the scenario with a message naming what was awaited, and a global
deadline ends a scenario that hangs anywhere else. Nothing sleeps to synchronise.

Environment:
  ROTOR_WS_URL        ws://127.0.0.1:PORT/connection/websocket
  ROTOR_API_URL       http://127.0.0.1:PORT/api
  ROTOR_TOKEN_SECRET  client.token.hmac_secret_key of the server's config
  ROTOR_API_KEY       http_api.key of the server's config
  ROTOR_FORMAT        json (default) or protobuf (centrifuge-python only)
  ROTOR_TIMEOUT_MS    global deadline (default 15000)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from typing import Any, Awaitable, Callable, Dict, List, Optional

import centrifuge
import jwt

# Longest single wait for an event or a reply, in seconds.
WAIT = 5.0


def fail(message: str) -> None:
    """Fails the scenario: message on stderr, exit status 1."""
    sys.stderr.write(f"interop scenario failed: {message}\n")
    sys.stderr.flush()
    os._exit(1)


def _env(name: str, required: bool = True) -> str:
    value = os.environ.get(name, "")
    if required and not value:
        fail(f"environment variable {name} is not set")
    return value


WS_URL = _env("ROTOR_WS_URL")
API_URL = _env("ROTOR_API_URL", required=False)
SECRET = _env("ROTOR_TOKEN_SECRET")
API_KEY = _env("ROTOR_API_KEY", required=False)
FORMAT = os.environ.get("ROTOR_FORMAT") or "json"
if FORMAT not in ("json", "protobuf"):
    fail(f"ROTOR_FORMAT must be json or protobuf, not {FORMAT}")
PROTOBUF = FORMAT == "protobuf"
TIMEOUT = float(os.environ.get("ROTOR_TIMEOUT_MS") or 15000) / 1000.0


def token(claims: Dict[str, Any], secret: str = SECRET) -> str:
    """Signs an HS256 token with `secret` (the server's by default)."""
    return jwt.encode(claims, secret, algorithm="HS256")


def enc(value: Any) -> Any:
    """Encodes a JSON value as this format's publication payload."""
    if PROTOBUF:
        return json.dumps(value, separators=(",", ":")).encode()
    return value


def dec(data: Any) -> Any:
    """Decodes a publication payload back to a JSON value."""
    if PROTOBUF:
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"protobuf payload is not bytes: {data!r}")
        return json.loads(bytes(data).decode())
    return data


class Log:
    """An ordered record of events that can be awaited without racing their emission."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: List[Dict[str, Any]] = []
        self._changed = asyncio.Event()

    def push(self, item: Dict[str, Any]) -> None:
        self.items.append(item)
        self._changed.set()

    def mark(self) -> int:
        """The number of items so far: a mark to wait for events after it."""
        return len(self.items)

    def since(
        self, start: int, pred: Callable[[Dict[str, Any]], bool] = lambda e: True
    ) -> List[Dict[str, Any]]:
        return [e for e in self.items[start:] if pred(e)]

    async def wait_count(
        self,
        what: str,
        pred: Callable[[Dict[str, Any]], bool],
        count: int = 1,
        start: int = 0,
        timeout: float = WAIT,
    ) -> List[Dict[str, Any]]:
        """Waits until `count` items at index >= `start` match `pred`; returns them."""

        async def poll() -> List[Dict[str, Any]]:
            while True:
                found = self.since(start, pred)
                if len(found) >= count:
                    return found[:count]
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(poll(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"{self.name}: timed out after {timeout} s waiting for {count} x {what}; "
                f"events so far: {json.dumps(self.items, default=str)}"
            ) from None

    async def wait(
        self,
        what: str,
        pred: Callable[[Dict[str, Any]], bool],
        start: int = 0,
        timeout: float = WAIT,
    ) -> Dict[str, Any]:
        return (await self.wait_count(what, pred, 1, start, timeout))[0]


def _info(info: Optional[centrifuge.ClientInfo]) -> Optional[Dict[str, Any]]:
    if info is None:
        return None
    return {"user": info.user, "client": info.client}


def _payload(data: Any) -> Any:
    try:
        return dec(data)
    except Exception as e:  # noqa: BLE001 - recorded, asserted on by the Rust test
        return {"undecodable": repr(e)}


class ClientEvents(centrifuge.ClientEventHandler):
    def __init__(self, log: Log) -> None:
        self.log = log

    async def on_connecting(self, ctx: centrifuge.ConnectingContext) -> None:
        self.log.push({"ev": "connecting", "code": ctx.code, "reason": ctx.reason})

    async def on_connected(self, ctx: centrifuge.ConnectedContext) -> None:
        self.log.push({"ev": "connected", "client": ctx.client})

    async def on_disconnected(self, ctx: centrifuge.DisconnectedContext) -> None:
        self.log.push({"ev": "disconnected", "code": ctx.code, "reason": ctx.reason})

    async def on_error(self, ctx: centrifuge.ErrorContext) -> None:
        reply = ctx.error if isinstance(ctx.error, centrifuge.ReplyError) else None
        self.log.push(
            {
                "ev": "error",
                "code": ctx.code,
                "reply_code": reply.code if reply else None,
                "message": repr(ctx.error),
            }
        )


class SubscriptionEvents(centrifuge.SubscriptionEventHandler):
    def __init__(self, log: Log, channel: str) -> None:
        self.log = log
        self.channel = channel

    def _push(self, item: Dict[str, Any]) -> None:
        item["channel"] = self.channel
        self.log.push(item)

    async def on_subscribing(self, ctx: centrifuge.SubscribingContext) -> None:
        self._push({"ev": "subscribing", "code": ctx.code, "reason": ctx.reason})

    async def on_subscribed(self, ctx: centrifuge.SubscribedContext) -> None:
        pos = ctx.stream_position
        self._push(
            {
                "ev": "subscribed",
                "recoverable": ctx.recoverable,
                "positioned": ctx.positioned,
                "was_recovering": ctx.was_recovering,
                "recovered": ctx.recovered,
                "offset": pos.offset if pos else None,
                "epoch": pos.epoch if pos else None,
            }
        )

    async def on_unsubscribed(self, ctx: centrifuge.UnsubscribedContext) -> None:
        self._push({"ev": "unsubscribed", "code": ctx.code, "reason": ctx.reason})

    async def on_publication(self, ctx: centrifuge.PublicationContext) -> None:
        pub = ctx.pub
        self._push(
            {
                "ev": "pub",
                "data": _payload(pub.data),
                "offset": pub.offset,
                "info": _info(pub.info),
                "tags": pub.tags or None,
            }
        )

    async def on_join(self, ctx: centrifuge.JoinContext) -> None:
        self._push({"ev": "join", "info": _info(ctx.info)})

    async def on_leave(self, ctx: centrifuge.LeaveContext) -> None:
        self._push({"ev": "leave", "info": _info(ctx.info)})

    async def on_error(self, ctx: centrifuge.SubscriptionErrorContext) -> None:
        self._push({"ev": "sub_error", "code": ctx.code, "message": repr(ctx.error)})


def new_client(name: str, **options: Any) -> tuple[centrifuge.Client, Log]:
    """A centrifuge-python client whose events go to a Log named `name`."""
    log = Log(name)
    options.setdefault("timeout", WAIT)
    options.setdefault("min_reconnect_delay", 0.05)
    options.setdefault("max_reconnect_delay", 0.5)
    client = centrifuge.Client(
        WS_URL,
        events=ClientEvents(log),
        use_protobuf=PROTOBUF,
        name="rotor-interop",
        proxy=None,
        **options,
    )
    return client, log


def new_subscription(
    client: centrifuge.Client, log: Log, channel: str, **options: Any
) -> centrifuge.Subscription:
    options.setdefault("min_resubscribe_delay", 0.05)
    options.setdefault("max_resubscribe_delay", 0.5)
    return client.new_subscription(channel, events=SubscriptionEvents(log, channel), **options)


def record_pings(client: centrifuge.Client, log: Log) -> None:
    """Records each server ping the SDK handles as {ev: "ping"} (wraps the SDK's private ping
    handler, which answers with a pong; the SDK version is pinned). A second ping after a pong
    timeout shorter than the interval proves the server accepted the first pong."""
    handle = client._handle_ping

    async def wrapped() -> None:
        log.push({"ev": "ping"})
        await handle()

    client._handle_ping = wrapped  # type: ignore[method-assign]


async def connect(client: centrifuge.Client, log: Log) -> str:
    """Connects and waits for `connected`; returns the client id."""
    start = log.mark()
    await client.connect()
    ev = await log.wait("connected", lambda e: e["ev"] == "connected", start)
    return ev["client"]


async def subscribe(sub: centrifuge.Subscription, log: Log) -> Dict[str, Any]:
    """Subscribes and waits for `subscribed` (fails on `unsubscribed`); returns the event."""
    start = log.mark()
    await sub.subscribe()
    ev = await log.wait(
        f"subscribed to {sub.channel}",
        lambda e: e.get("channel") == sub.channel and e["ev"] in ("subscribed", "unsubscribed"),
        start,
    )
    if ev["ev"] != "subscribed":
        raise AssertionError(f"subscribe to {sub.channel} failed: {ev}")
    return ev


async def reply_error(what: str, call: Awaitable[Any]) -> Dict[str, Any]:
    """The SDK's ReplyError for a refused call as {code, message}; fails if it succeeded."""
    try:
        result = await call
    except centrifuge.ReplyError as e:
        return {"code": e.code, "message": e.message}
    raise AssertionError(f"{what} succeeded but an error was expected: {result!r}")


def run(main: Callable[[], Awaitable[Dict[str, Any]]]) -> None:
    """Runs `main` under the global deadline and prints its observations as JSON."""

    async def bounded() -> Dict[str, Any]:
        return await asyncio.wait_for(main(), TIMEOUT)

    try:
        out = asyncio.run(bounded())
    except asyncio.TimeoutError:
        fail(f"scenario did not finish within {TIMEOUT} s")
    except Exception:  # noqa: BLE001 - any failure ends the scenario with its traceback
        fail(traceback.format_exc())
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
