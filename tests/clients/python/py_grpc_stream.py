"""Subscribe stream proxies with a backend from another toolchain: a Python grpcio server of
Centrifugo's `CentrifugoProxy` service (stubs generated at run time by grpcio-tools from
data-plane/proto/proxy.proto) serves `SubscribeUnidirectional` and `SubscribeBidirectional`
for a spawned rotor-data-plane, and a real centrifuge-python client subscribes:

- `ps:tail`: the stream answers with subscribe data, sends three publications, then waits;
  the client unsubscribes and the backend sees its stream cancelled.
- `ps:ending`: three publications, then the backend ends the stream; the client is
  unsubscribed by the server (code 2000).
- `psb:echo` (bidirectional): the client's publishes go up the stream and the backend echoes
  each one back down as a publication.

The data plane's config points `channel.proxy.subscribe_stream` at
grpc://127.0.0.1:ROTOR_PROXY_PORT, where this script listens; `ps` streams one way, `psb` both
ways. Reads ROTOR_PROXY_PORT besides the variables of interop_common.

Prints one JSON object; see tests/tests/interop_python.rs for the exact expectations.
"""

import asyncio
import json
from typing import Any, Dict, List

import centrifuge

from interop_common import (
    Log,
    SubscriptionEvents,
    _env,
    connect,
    dec,
    enc,
    fail,
    new_client,
    run,
    token,
)
from py_grpc_proxy import generate_stubs

PORT = int(_env("ROTOR_PROXY_PORT"))


class StreamEvents(SubscriptionEvents):
    """Records the subscribe result's data and decoded publications."""

    async def on_subscribed(self, ctx: centrifuge.SubscribedContext) -> None:
        self._push({"ev": "subscribed", "data": dec(ctx.data) if ctx.data else None})

    async def on_publication(self, ctx: centrifuge.PublicationContext) -> None:
        self._push({"ev": "pub", "data": dec(ctx.pub.data), "offset": ctx.pub.offset})


def lines(log: Log, channel: str, start: int) -> List[Any]:
    """The data of the publications on `channel` since `start`."""
    pubs = log.since(start, lambda e: e.get("channel") == channel and e["ev"] == "pub")
    return [e["data"] for e in pubs]


async def main() -> Dict[str, Any]:
    import grpc

    pb, pb_grpc = generate_stubs()
    backend = Log("backend")

    def publication(value: Any) -> Any:
        data = json.dumps(value, separators=(",", ":")).encode()
        return pb.StreamSubscribeResponse(publication=pb.Publication(data=data))

    class Backend(pb_grpc.CentrifugoProxyServicer):
        async def SubscribeUnidirectional(self, request: Any, context: Any) -> Any:
            channel = request.channel
            backend.push(
                {
                    "ev": "opened",
                    "channel": channel,
                    "user": request.user,
                    "data": json.loads(request.data) if request.data else None,
                }
            )
            result = pb.SubscribeResult(data=b'{"tail":"on"}')
            yield pb.StreamSubscribeResponse(subscribe_response=pb.SubscribeResponse(result=result))
            for n in range(3):
                yield publication({"line": n})
            if channel == "ps:ending":
                backend.push({"ev": "ended", "channel": channel})
                return
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                backend.push({"ev": "cancelled", "channel": channel})
                raise

        async def SubscribeBidirectional(self, request_iterator: Any, context: Any) -> Any:
            first = True
            async for message in request_iterator:
                if first:
                    first = False
                    backend.push(
                        {"ev": "opened", "channel": message.subscribe_request.channel, "bidi": True}
                    )
                    answer = pb.SubscribeResponse(result=pb.SubscribeResult())
                    yield pb.StreamSubscribeResponse(subscribe_response=answer)
                    continue
                value = json.loads(message.publication.data)
                backend.push({"ev": "up", "data": value})
                yield publication({"echo": value})

    server = grpc.aio.server()
    pb_grpc.add_CentrifugoProxyServicer_to_server(Backend(), server)
    if server.add_insecure_port(f"127.0.0.1:{PORT}") != PORT:
        fail(f"cannot listen on 127.0.0.1:{PORT}")
    await server.start()
    out: Dict[str, Any] = {}
    client, log = new_client("streamer", token=token({"sub": "py-streamer"}))
    try:
        await connect(client, log)

        tail = client.new_subscription(
            "ps:tail", events=StreamEvents(log, "ps:tail"), data=enc({"query": "errors"})
        )
        start = log.mark()
        await tail.subscribe()
        ev = await log.wait(
            "subscribed to ps:tail",
            lambda e: e.get("channel") == "ps:tail" and e["ev"] in ("subscribed", "unsubscribed"),
            start,
        )
        out["tail_subscribed"] = ev
        await log.wait_count(
            "3 publications on ps:tail",
            lambda e: e.get("channel") == "ps:tail" and e["ev"] == "pub",
            3,
            start,
        )
        out["tail_pubs"] = lines(log, "ps:tail", start)
        out["tail_offsets"] = [
            e["offset"]
            for e in log.since(start, lambda e: e.get("channel") == "ps:tail" and e["ev"] == "pub")
        ]
        mark = backend.mark()
        await tail.unsubscribe()
        await backend.wait("ps:tail cancelled", lambda e: e["ev"] == "cancelled", mark)
        out["tail_cancelled"] = True

        ending = client.new_subscription("ps:ending", events=StreamEvents(log, "ps:ending"))
        start = log.mark()
        await ending.subscribe()
        ev = await log.wait(
            "ps:ending unsubscribed",
            lambda e: e.get("channel") == "ps:ending" and e["ev"] == "unsubscribed",
            start,
        )
        out["ending_pubs"] = lines(log, "ps:ending", start)
        out["ending_unsubscribed"] = {"code": ev["code"], "reason": ev["reason"]}

        echo = client.new_subscription("psb:echo", events=StreamEvents(log, "psb:echo"))
        start = log.mark()
        await echo.subscribe()
        await log.wait(
            "subscribed to psb:echo",
            lambda e: e.get("channel") == "psb:echo" and e["ev"] == "subscribed",
            start,
        )
        for n in range(2):
            await echo.publish(enc({"n": n}))
        await log.wait_count(
            "2 echoes on psb:echo",
            lambda e: e.get("channel") == "psb:echo" and e["ev"] == "pub",
            2,
            start,
        )
        out["echoes"] = lines(log, "psb:echo", start)
        out["backend"] = backend.items
        return out
    finally:
        await client.disconnect()
        await server.stop(None)


if __name__ == "__main__":
    run(main)
