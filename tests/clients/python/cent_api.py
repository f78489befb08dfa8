"""The server HTTP API through `cent` 5.x (AsyncClient): publish, broadcast, history,
presence, presence_stats, channels, info, history_remove, batch, unsubscribe and disconnect,
checked against a centrifuge-python subscriber that sees their effects; plus API errors
(102 unknown namespace, 107 bad request, 108 not available) and a wrong API key (401).

Needs a `chat` namespace with presence, history and force_recovery (subscribe allowed for
clients), channels without a namespace open to subscribe with no history, and no `nope`
namespace.

Prints one JSON object; see tests/tests/interop_python.rs for the exact expectations.
"""

from typing import Any, Awaitable, Dict

import cent

from interop_common import (
    API_KEY,
    API_URL,
    connect,
    new_client,
    new_subscription,
    run,
    subscribe,
    token,
)

CHANNEL = "chat:cent"
OTHER = "chat:other"
OPEN = "open-cent"


async def api_error(what: str, call: Awaitable[Any]) -> Dict[str, Any]:
    """The CentApiResponseError of a refused call as {code, message}."""
    try:
        result = await call
    except cent.CentApiResponseError as e:
        return {"code": e.code, "message": e.message}
    raise AssertionError(f"{what} succeeded but an error was expected: {result!r}")


def pubs(history: cent.HistoryResult) -> list:
    return [{"data": p.data, "offset": p.offset, "tags": p.tags} for p in history.publications]


async def main() -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    api = cent.AsyncClient(API_URL, API_KEY, timeout=5.0)
    wrong = cent.AsyncClient(API_URL, API_KEY + "-wrong", timeout=5.0)
    s, log = new_client("py-sub", token=token({"sub": "py-sub", "info": {"name": "Sub"}}))
    try:
        s_client = await connect(s, log)
        sub = new_subscription(s, log, CHANNEL)
        first = await subscribe(sub, log)
        epoch = first["epoch"]
        await subscribe(new_subscription(s, log, OPEN), log)

        def on_channel(e: Dict[str, Any]) -> bool:
            return e["ev"] == "pub" and e["channel"] == CHANNEL

        # publish
        mark = log.mark()
        r = await api.publish(
            cent.PublishRequest(channel=CHANNEL, data={"n": 1}, tags={"via": "publish"})
        )
        out["publish"] = {"offset": r.offset, "epoch_matches": r.epoch == epoch}
        got = await log.wait("published publication", on_channel, mark)
        out["publish_received"] = {
            "data": got["data"],
            "offset": got["offset"],
            "tags": got["tags"],
            "info": got["info"],
        }

        # broadcast: two channels with history, one unknown namespace.
        mark = log.mark()
        r = await api.broadcast(
            cent.BroadcastRequest(channels=[CHANNEL, OTHER, "nope:b"], data={"n": 2})
        )
        out["broadcast"] = [
            {
                "offset": resp.result.offset if resp.result else None,
                "error": resp.error.code if resp.error else None,
            }
            for resp in r.responses
        ]
        out["broadcast_epoch_matches"] = bool(
            r.responses and r.responses[0].result and r.responses[0].result.epoch == epoch
        )
        got = await log.wait("broadcast publication", on_channel, mark)
        out["broadcast_received"] = {"data": got["data"], "offset": got["offset"]}

        # history
        h = await api.history(cent.HistoryRequest(channel=CHANNEL, limit=-1))
        out["history"] = {
            "publications": pubs(h),
            "offset": h.offset,
            "epoch_matches": h.epoch == epoch,
        }
        h = await api.history(cent.HistoryRequest(channel=CHANNEL, limit=1, reverse=True))
        out["history_reverse_1"] = [p.offset for p in h.publications]
        h = await api.history(
            cent.HistoryRequest(
                channel=CHANNEL, limit=10, since=cent.StreamPosition(offset=1, epoch=epoch)
            )
        )
        out["history_since_1"] = [p.offset for p in h.publications]
        h = await api.history(cent.HistoryRequest(channel=CHANNEL))
        out["history_no_limit"] = {"count": len(h.publications), "offset": h.offset}

        # presence / presence_stats
        p = await api.presence(cent.PresenceRequest(channel=CHANNEL))
        out["presence"] = [
            {
                "key_is_subscriber": key == s_client,
                "client_is_subscriber": info.client == s_client,
                "user": info.user,
                "conn_info": info.conn_info,
            }
            for key, info in p.presence.items()
        ]
        st = await api.presence_stats(cent.PresenceStatsRequest(channel=CHANNEL))
        out["presence_stats"] = {"num_clients": st.num_clients, "num_users": st.num_users}
        st = await api.presence_stats(cent.PresenceStatsRequest(channel="chat:empty"))
        out["presence_stats_empty"] = {"num_clients": st.num_clients, "num_users": st.num_users}

        # channels / info
        ch = await api.channels(cent.ChannelsRequest())
        out["channels"] = {name: c.num_clients for name, c in sorted(ch.channels.items())}
        ch = await api.channels(cent.ChannelsRequest(pattern="chat:*"))
        out["channels_chat"] = {name: c.num_clients for name, c in sorted(ch.channels.items())}
        info = await api.info(cent.InfoRequest())
        out["info"] = [
            {
                "uid_len": len(n.uid),
                "name_len": len(n.name),
                "num_clients": n.num_clients,
                "num_users": n.num_users,
                "num_subs": n.num_subs,
                "num_channels": n.num_channels,
            }
            for n in info.nodes
        ]

        # history_remove keeps the stream position.
        await api.history_remove(cent.HistoryRemoveRequest(channel=CHANNEL))
        h = await api.history(cent.HistoryRequest(channel=CHANNEL, limit=-1))
        out["history_after_remove"] = {
            "count": len(h.publications),
            "offset": h.offset,
            "epoch_matches": h.epoch == epoch,
        }

        # batch
        mark = log.mark()
        b = await api.batch(
            cent.BatchRequest(
                requests=[
                    cent.PublishRequest(channel=CHANNEL, data={"n": 3}),
                    cent.PresenceStatsRequest(channel=CHANNEL),
                    cent.HistoryRequest(channel=CHANNEL, limit=-1),
                ]
            )
        )
        r0, r1, r2 = b.replies
        out["batch"] = {
            "publish_offset": r0.offset,
            "presence_stats": {"num_clients": r1.num_clients, "num_users": r1.num_users},
            "history": pubs(r2),
        }
        got = await log.wait("batch publication", on_channel, mark)
        out["batch_received"] = {"data": got["data"], "offset": got["offset"]}

        # Errors.
        out["publish_unknown_namespace"] = await api_error(
            "publish to nope:x", api.publish(cent.PublishRequest(channel="nope:x", data={}))
        )
        out["publish_empty_channel"] = await api_error(
            "publish to ''", api.publish(cent.PublishRequest(channel="", data={}))
        )
        out["history_unavailable"] = await api_error(
            "history of a channel without history",
            api.history(cent.HistoryRequest(channel=OPEN, limit=1)),
        )
        try:
            await wrong.info(cent.InfoRequest())
            out["wrong_key"] = "accepted"
        except cent.CentUnauthorizedError:
            out["wrong_key"] = "unauthorized"
        except cent.CentError as e:
            out["wrong_key"] = repr(e)

        # unsubscribe: the subscriber's subscription ends with 2000.
        mark = log.mark()
        await api.unsubscribe(cent.UnsubscribeRequest(user="py-sub", channel=CHANNEL))
        ev = await log.wait(
            "server unsubscribe",
            lambda e: e["ev"] == "unsubscribed" and e["channel"] == CHANNEL,
            mark,
        )
        out["unsubscribe"] = {"code": ev["code"], "reason": ev["reason"]}

        # disconnect with a custom terminal code.
        mark = log.mark()
        await api.disconnect(
            cent.DisconnectRequest(
                user="py-sub", disconnect=cent.Disconnect(code=4501, reason="bye")
            )
        )
        ev = await log.wait("disconnect", lambda e: e["ev"] == "disconnected", mark)
        out["disconnect"] = {"code": ev["code"], "reason": ev["reason"], "state": s.state.value}
        return out
    finally:
        await s.disconnect()
        await api.close()
        await wrong.close()


if __name__ == "__main__":
    run(main)
