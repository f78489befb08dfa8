"""The gRPC server API through Python grpcio: stubs are generated at run time by grpcio-tools
from data-plane/proto/api.proto (the wire contract of Centrifugo's api.proto), then every
method is called against a spawned rotor-data-plane, with a centrifuge-python subscriber that
sees the effects: publish, broadcast, history, presence, presence_stats, channels, info,
history_remove, rpc, refresh, subscribe, unsubscribe, disconnect, batch, a PRO method (104),
errors in the reply body (102, 107), and a missing or wrong key (UNAUTHENTICATED).

Needs a `chat` namespace with presence, history and force_recovery (subscribe allowed for
clients) and no `nope` namespace. Reads ROTOR_GRPC_ADDR (host:port of the gRPC API) besides
the variables of interop_common.

Prints one JSON object; see tests/tests/interop_python.rs for the exact expectations.
"""

import json
from typing import Any, Dict

from grpc_stubs import generate_stubs
from interop_common import (
    API_KEY,
    _env,
    connect,
    new_client,
    new_subscription,
    run,
    subscribe,
    token,
)

GRPC_ADDR = _env("ROTOR_GRPC_ADDR")
CHANNEL = "chat:grpc"


def err(reply: Any) -> Any:
    """The reply's error as {code, message}, or None."""
    if not reply.HasField("error"):
        return None
    return {"code": reply.error.code, "message": reply.error.message}


async def main() -> Dict[str, Any]:
    import grpc

    pb, pb_grpc = generate_stubs()
    out: Dict[str, Any] = {}
    auth = (("authorization", f"apikey {API_KEY}"),)
    channel = grpc.aio.insecure_channel(GRPC_ADDR)
    api = pb_grpc.CentrifugoApiStub(channel)
    s, log = new_client("py-grpc", token=token({"sub": "py-grpc"}))
    try:
        await connect(s, log)
        sub = new_subscription(s, log, CHANNEL)
        await subscribe(sub, log)

        def on_pub(e: Dict[str, Any]) -> bool:
            return e["ev"] == "pub" and e["channel"] == CHANNEL

        start = log.mark()
        r = await api.Publish(
            pb.PublishRequest(channel=CHANNEL, data=b'{"via":"grpc","n":1}', tags={"k": "v"}),
            metadata=auth,
            timeout=5,
        )
        out["publish"] = {"error": err(r), "offset": r.result.offset, "epoch": bool(r.result.epoch)}
        ev = await log.wait("publication 1", on_pub, start)
        out["received"] = {"data": ev["data"], "tags": ev["tags"]}

        r = await api.Broadcast(
            pb.BroadcastRequest(channels=[CHANNEL, "nope:x"], data=b'{"n":2}'),
            metadata=auth,
            timeout=5,
        )
        out["broadcast"] = [
            {"error": err(x), "offset": x.result.offset} for x in r.result.responses
        ]
        await log.wait("publication 2", lambda e: on_pub(e) and e["data"] == {"n": 2}, start)

        r = await api.History(
            pb.HistoryRequest(channel=CHANNEL, limit=-1), metadata=auth, timeout=5
        )
        out["history"] = {
            "offset": r.result.offset,
            "publications": [
                {"data": json.loads(p.data), "offset": p.offset} for p in r.result.publications
            ],
        }

        r = await api.Presence(pb.PresenceRequest(channel=CHANNEL), metadata=auth, timeout=5)
        out["presence"] = sorted(c.user for c in r.result.presence.values())
        r = await api.PresenceStats(
            pb.PresenceStatsRequest(channel=CHANNEL), metadata=auth, timeout=5
        )
        out["presence_stats"] = [r.result.num_clients, r.result.num_users]
        r = await api.Channels(pb.ChannelsRequest(pattern="chat:*"), metadata=auth, timeout=5)
        out["channels"] = {k: v.num_clients for k, v in r.result.channels.items()}
        r = await api.Info(pb.InfoRequest(), metadata=auth, timeout=5)
        out["info"] = [{"num_clients": n.num_clients, "has_uid": bool(n.uid)} for n in r.result.nodes]

        r = await api.Batch(
            pb.BatchRequest(
                commands=[
                    pb.Command(publish=pb.PublishRequest(channel=CHANNEL, data=b'{"n":3}')),
                    pb.Command(presence_stats=pb.PresenceStatsRequest(channel=CHANNEL)),
                    pb.Command(publish=pb.PublishRequest(channel="", data=b"{}")),
                ]
            ),
            metadata=auth,
            timeout=5,
        )
        out["batch"] = [
            {
                "error": err(x),
                "publish_offset": x.publish.offset if x.HasField("publish") else None,
                "num_clients": x.presence_stats.num_clients
                if x.HasField("presence_stats")
                else None,
            }
            for x in r.replies
        ]

        r = await api.HistoryRemove(
            pb.HistoryRemoveRequest(channel=CHANNEL), metadata=auth, timeout=5
        )
        out["history_remove"] = err(r)
        r = await api.History(pb.HistoryRequest(channel=CHANNEL, limit=-1), metadata=auth, timeout=5)
        out["history_after_remove"] = len(r.result.publications)

        r = await api.RPC(pb.RPCRequest(method="m", params=b"{}"), metadata=auth, timeout=5)
        out["rpc"] = err(r)["code"]
        r = await api.Publish(pb.PublishRequest(channel="nope:x", data=b"{}"), metadata=auth, timeout=5)
        out["publish_unknown_namespace"] = err(r)
        r = await api.GetUserStatus(pb.ProRequest(), metadata=auth, timeout=5)
        out["pro_method"] = err(r)["code"]

        start = log.mark()
        r = await api.Subscribe(
            pb.SubscribeRequest(user="py-grpc", channel="chat:grpc-2"), metadata=auth, timeout=5
        )
        out["subscribe"] = err(r)
        r = await api.Unsubscribe(
            pb.UnsubscribeRequest(user="py-grpc", channel=CHANNEL), metadata=auth, timeout=5
        )
        out["unsubscribe"] = err(r)
        ev = await log.wait(
            "server-side unsubscribe",
            lambda e: e["ev"] == "unsubscribed" and e["channel"] == CHANNEL,
            start,
        )
        out["unsubscribed_code"] = ev["code"]
        r = await api.Refresh(
            pb.RefreshRequest(user="py-grpc", expired=False), metadata=auth, timeout=5
        )
        out["refresh"] = err(r)

        codes = []
        for metadata in [(), (("authorization", f"apikey {API_KEY}-wrong"),)]:
            try:
                await api.Info(pb.InfoRequest(), metadata=metadata, timeout=5)
                codes.append("OK")
            except grpc.aio.AioRpcError as e:
                codes.append(e.code().name)
        out["unauthenticated"] = codes

        start = log.mark()
        r = await api.Disconnect(
            pb.DisconnectRequest(
                user="py-grpc", disconnect=pb.Disconnect(code=4500, reason="bye")
            ),
            metadata=auth,
            timeout=5,
        )
        out["disconnect"] = err(r)
        ev = await log.wait("disconnect", lambda e: e["ev"] == "disconnected", start)
        out["disconnected"] = [ev["code"], ev["reason"]]
    finally:
        await channel.close()
        await s.disconnect()
    return out


if __name__ == "__main__":
    run(main)
