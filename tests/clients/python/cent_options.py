"""`cent` 5.x with the server API's connection targeting and options: `session` in subscribe,
unsubscribe and disconnect reaches one unidirectional HTTP stream of a user and not the other;
`override` in subscribe turns on recovery in a namespace that only allows it; a batch with
`parallel` answers every command in order, and a centrifuge-python subscriber gets every
publication of it once, in offset order.

Needs the base config of tests/src/interop.rs with `uni_http_stream` enabled (see
tests/tests/interop_python.rs): `tags:*` has history and allows recovery without forcing it,
`chat:*` has history, channels without a namespace have neither.

Prints one JSON object; see tests/tests/interop_python.rs for the exact expectations.
"""

import asyncio
import json
from typing import Any, Dict, Optional

import aiohttp
import cent

from interop_common import (
    API_KEY,
    API_URL,
    WAIT,
    WS_URL,
    connect,
    new_client,
    new_subscription,
    run,
    subscribe,
    token,
)

UNI_URL = WS_URL.replace("ws://", "http://", 1).replace(
    "/connection/websocket", "/connection/uni_http_stream"
)
USER = "py-uni"


class UniStream:
    """A unidirectional HTTP stream: one JSON message per line, `{}` lines are pings."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.resp: Optional[aiohttp.ClientResponse] = None
        self.session = ""
        self.client = ""

    async def open(self) -> "UniStream":
        body = json.dumps({"token": token({"sub": USER})})
        self.resp = await self.http.post(UNI_URL, data=body)
        if self.resp.status != 200:
            raise AssertionError(f"uni_http_stream answered {self.resp.status}")
        connect_push = await self.next()
        if connect_push is None or "connect" not in connect_push:
            raise AssertionError(f"expected the connect push, got {connect_push!r}")
        self.session = connect_push["connect"]["session"]
        self.client = connect_push["connect"]["client"]
        return self

    async def next(self) -> Optional[Dict[str, Any]]:
        """The next message that is not a ping; None when the stream ended."""
        assert self.resp is not None
        while True:
            line = await asyncio.wait_for(self.resp.content.readline(), WAIT)
            if not line:
                return None
            text = line.decode().strip()
            if text and text != "{}":
                return json.loads(text)


async def main() -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    api = cent.AsyncClient(API_URL, API_KEY, timeout=5.0)
    on = cent.ChannelOptionsOverride(force_recovery=cent.BoolValue(value=True))
    async with aiohttp.ClientSession() as http:
        first = await UniStream(http).open()
        second = await UniStream(http).open()
        out["sessions"] = {
            "distinct": first.session != second.session,
            "not_client_ids": first.session not in (first.client, second.client),
        }

        # subscribe with a session and an override: only the first stream follows tags:uni,
        # with recovery on.
        await api.subscribe(
            cent.SubscribeRequest(user=USER, channel="tags:uni", session=first.session, override=on)
        )
        push = await first.next()
        assert push is not None
        out["subscribe_push"] = {
            "channel": push.get("channel"),
            "recoverable": push.get("subscribe", {}).get("recoverable", False),
            "positioned": push.get("subscribe", {}).get("positioned", False),
        }
        # Without a session both streams follow `both`; the second's next push is that one.
        await api.subscribe(cent.SubscribeRequest(user=USER, channel="both"))
        out["first_next"] = (await first.next() or {}).get("channel")
        out["second_next"] = (await second.next() or {}).get("channel")

        # unsubscribe with a session: the first leaves `both`, the second keeps it.
        await api.unsubscribe(
            cent.UnsubscribeRequest(user=USER, channel="both", session=first.session)
        )
        push = await first.next() or {}
        out["unsubscribe_push"] = {"channel": push.get("channel"), "has_unsubscribe": "unsubscribe" in push}
        await api.publish(cent.PublishRequest(channel="both", data={"n": 1}))
        out["second_pub"] = ((await second.next()) or {}).get("pub", {}).get("data")

        # disconnect with a session: the first stream ends with 3503 (and never saw the
        # publication into `both`); the second gets the next one.
        await api.disconnect(cent.DisconnectRequest(user=USER, session=first.session))
        push = await first.next() or {}
        out["first_disconnect"] = push.get("disconnect", {}).get("code")
        out["first_ended"] = (await first.next()) is None
        await api.publish(cent.PublishRequest(channel="both", data={"n": 2}))
        out["second_pub_after"] = ((await second.next()) or {}).get("pub", {}).get("data")

    # A parallel batch: publications into one channel, every reply in its place.
    s, log = new_client("py-batch", token=token({"sub": "py-batch"}))
    try:
        await connect(s, log)
        await subscribe(new_subscription(s, log, "chat:batch"), log)
        mark = log.mark()
        batch = await api.batch(
            cent.BatchRequest(
                requests=[
                    cent.PublishRequest(channel="chat:batch", data={"n": i}) for i in range(20)
                ]
                + [cent.PresenceStatsRequest(channel="chat:batch")],
                parallel=True,
            )
        )
        offsets = [r.offset for r in batch.replies[:20]]
        out["batch"] = {
            "replies": len(batch.replies),
            "offsets": sorted(offsets),
            "presence_clients": batch.replies[20].num_clients,
        }
        got = await log.wait_count(
            "20 batch publications",
            lambda e: e["ev"] == "pub" and e["channel"] == "chat:batch",
            20,
            mark,
        )
        out["batch_received_offsets"] = [e["offset"] for e in got]
        out["batch_received_n"] = sorted(e["data"]["n"] for e in got)
    finally:
        await s.disconnect()
    return out


run(main)
