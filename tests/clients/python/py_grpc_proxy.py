"""gRPC proxies with a backend from another toolchain: a Python grpcio server of Centrifugo's
`CentrifugoProxy` service, its stubs generated at run time by grpcio-tools from
data-plane/proto/proxy.proto, answers the connect and subscribe proxies of a spawned
rotor-data-plane for a real centrifuge-python client: a client without a token is named by
the connect proxy (user, connect data, info), a subscription is allowed with data or refused
with the backend's error, and a connection the backend refuses ends with its error (the SDK
turns a permanent connect error into a disconnect with that code).

The data plane's config points its connect proxy and the subscribe proxy of the `gp`
namespace at grpc://127.0.0.1:ROTOR_PROXY_PORT, where this script listens. Reads
ROTOR_PROXY_PORT besides the variables of interop_common.

Prints one JSON object; see tests/tests/interop_python.rs for the exact expectations.
"""

import json
from typing import Any, Dict, List

import centrifuge

import grpc_stubs
from interop_common import (
    Log,
    SubscriptionEvents,
    _env,
    fail,
    new_client,
    run,
)

PORT = int(_env("ROTOR_PROXY_PORT"))


def generate_stubs() -> Any:
    """The stubs of proxy.proto (see grpc_stubs.py); returns (pb2, grpc)."""
    return grpc_stubs.generate_stubs("proxy")


class ConnectData(centrifuge.ClientEventHandler):
    """Records the connect result's data and the disconnects of one client."""

    def __init__(self, log: Log) -> None:
        self.log = log

    async def on_connected(self, ctx: centrifuge.ConnectedContext) -> None:
        self.log.push({"ev": "connected", "client": ctx.client, "data": ctx.data})

    async def on_disconnected(self, ctx: centrifuge.DisconnectedContext) -> None:
        self.log.push({"ev": "disconnected", "code": ctx.code, "reason": ctx.reason})

    async def on_error(self, ctx: centrifuge.ErrorContext) -> None:
        reply = ctx.error if isinstance(ctx.error, centrifuge.ReplyError) else None
        self.log.push(
            {"ev": "error", "reply_code": reply.code if reply else None, "message": repr(ctx.error)}
        )


class SubscribeData(SubscriptionEvents):
    """Records the subscribe result's data besides what SubscriptionEvents records."""

    async def on_subscribed(self, ctx: centrifuge.SubscribedContext) -> None:
        self._push({"ev": "subscribed", "data": ctx.data})


def new_subscription(
    client: centrifuge.Client, log: Log, channel: str, **options: Any
) -> centrifuge.Subscription:
    return client.new_subscription(channel, events=SubscribeData(log, channel), **options)


async def main() -> Dict[str, Any]:
    import grpc

    pb, pb_grpc = generate_stubs()
    calls: List[Dict[str, Any]] = []

    class Backend(pb_grpc.CentrifugoProxyServicer):
        async def Connect(self, request: Any, context: Any) -> Any:
            data = json.loads(request.data) if request.data else None
            calls.append(
                {
                    "call": "connect",
                    "transport": request.transport,
                    "protocol": request.protocol,
                    "encoding": request.encoding,
                    "name": request.name,
                    "data": data,
                    "client_set": bool(request.client),
                }
            )
            if data == {"let_me_in": False}:
                return pb.ConnectResponse(error=pb.Error(code=4403, message="not you"))
            return pb.ConnectResponse(
                result=pb.ConnectResult(
                    user="py-proxied",
                    data=b'{"hello":"from python"}',
                    info=b'{"name":"py"}',
                )
            )

        async def Subscribe(self, request: Any, context: Any) -> Any:
            calls.append(
                {
                    "call": "subscribe",
                    "user": request.user,
                    "channel": request.channel,
                    "data": json.loads(request.data) if request.data else None,
                }
            )
            if request.channel == "gp:closed":
                return pb.SubscribeResponse(error=pb.Error(code=4103, message="closed room"))
            return pb.SubscribeResponse(result=pb.SubscribeResult(data=b'{"motd":"py room"}'))

    server = grpc.aio.server()
    pb_grpc.add_CentrifugoProxyServicer_to_server(Backend(), server)
    if server.add_insecure_port(f"127.0.0.1:{PORT}") != PORT:
        fail(f"cannot listen on 127.0.0.1:{PORT}")
    await server.start()
    out: Dict[str, Any] = {}
    log = Log("proxied")
    client, _ = new_client("proxied", data={"let_me_in": True})
    client.events = ConnectData(log)
    denied, denied_log = new_client("denied", data={"let_me_in": False})
    denied.events = ConnectData(denied_log)
    try:
        start = log.mark()
        await client.connect()
        ev = await log.wait("connected", lambda e: e["ev"] == "connected", start)
        out["connect_data"] = ev["data"]

        sub = new_subscription(client, log, "gp:open", data={"want": "in"})
        start = log.mark()
        await sub.subscribe()
        ev = await log.wait(
            "subscribed to gp:open",
            lambda e: e.get("channel") == "gp:open" and e["ev"] in ("subscribed", "unsubscribed"),
            start,
        )
        out["subscribed"] = {"ev": ev["ev"], "data": ev.get("data")}

        closed = new_subscription(client, log, "gp:closed")
        start = log.mark()
        await closed.subscribe()
        ev = await log.wait(
            "gp:closed refused",
            lambda e: e.get("channel") == "gp:closed" and e["ev"] in ("subscribed", "unsubscribed"),
            start,
        )
        out["closed"] = {"ev": ev["ev"], "code": ev["code"]}

        start = denied_log.mark()
        await denied.connect()
        ev = await denied_log.wait(
            "denied connect", lambda e: e["ev"] in ("disconnected", "connected"), start
        )
        out["denied"] = {"ev": ev["ev"], "code": ev.get("code"), "reason": ev.get("reason")}
        out["calls"] = calls
        return out
    finally:
        await client.disconnect()
        await denied.disconnect()
        await server.stop(None)


if __name__ == "__main__":
    run(main)
