"""centrifuge-python (asyncio) flow, over JSON or Protobuf (ROTOR_FORMAT), with publications
from the server API through `cent`: connect, subscribe, receive, publish from the client,
join/leave, presence, presence_stats, history, recovery after a gap, the error paths
(102, 103, 109 with get_token, 3500), connection refresh through get_token (3005 without it),
and server pings answered with pongs.

Needs a `chat` namespace with presence, join_leave + force_push_join_leave, history and
force_recovery, subscribe/publish/history/presence allowed for subscribers, a `locked`
namespace without permissions and no `nope` namespace.

Prints one JSON object; see tests/tests/interop_python.rs for the exact expectations.
"""

import asyncio
import time
from typing import Any, Dict

import cent
import centrifuge

from interop_common import (
    API_KEY,
    API_URL,
    FORMAT,
    connect,
    enc,
    dec,
    new_client,
    new_subscription,
    record_pings,
    reply_error,
    run,
    subscribe,
    token,
)

CHANNEL = "chat:py"


def pub_view(e: Dict[str, Any], a_client: str) -> Dict[str, Any]:
    info = e["info"]
    return {
        "data": e["data"],
        "offset": e["offset"],
        "info": {"user": info["user"], "from_a": info["client"] == a_client} if info else None,
        "tags": e["tags"],
    }


def is_pub(e: Dict[str, Any]) -> bool:
    return e["ev"] == "pub" and e["channel"] == CHANNEL


async def main() -> Dict[str, Any]:
    out: Dict[str, Any] = {"format": FORMAT}
    api = cent.AsyncClient(API_URL, API_KEY, timeout=5.0)
    clients = []
    try:
        a, a_log = new_client("py-alice", token=token({"sub": "py-alice"}))
        clients.append(a)
        record_pings(a, a_log)
        a_client = await connect(a, a_log)
        out["a"] = {"client_id_len": len(a_client)}

        sub_a = new_subscription(a, a_log, CHANNEL)
        first = await subscribe(sub_a, a_log)
        epoch = first["epoch"]
        out["first_subscribe"] = {
            "recoverable": first["recoverable"],
            "positioned": first["positioned"],
            "was_recovering": first["was_recovering"],
            "recovered": first["recovered"],
            "offset": first["offset"],
            "epoch_nonempty": bool(epoch),
        }

        # A publication through cent, then one from the client.
        mark = a_log.mark()
        published = await api.publish(
            cent.PublishRequest(
                channel=CHANNEL, data={"text": "via cent", "n": 1}, tags={"source": "cent"}
            )
        )
        out["cent_publish"] = {"offset": published.offset, "epoch_matches": published.epoch == epoch}
        await sub_a.publish(enc({"text": "via python", "n": 2}))
        out["a_pubs"] = [
            pub_view(e, a_client) for e in await a_log.wait_count("publications", is_pub, 2, mark)
        ]

        # Bob joins; Alice sees it; presence counts both.
        b, b_log = new_client("py-bob", token=token({"sub": "py-bob"}))
        clients.append(b)
        b_client = await connect(b, b_log)
        await subscribe(new_subscription(b, b_log, CHANNEL), b_log)
        join = await a_log.wait(
            "bob's join", lambda e: e["ev"] == "join" and e["info"]["client"] == b_client
        )
        out["join"] = {"user": join["info"]["user"]}
        stats = await sub_a.presence_stats()
        out["presence_stats"] = {"num_clients": stats.num_clients, "num_users": stats.num_users}
        presence = await sub_a.presence()
        out["presence"] = sorted(
            [
                {
                    "user": info.user,
                    "key_is_client": key == info.client,
                    "who": "a" if info.client == a_client else "b" if info.client == b_client else "?",
                }
                for key, info in presence.clients.items()
            ],
            key=lambda p: p["user"],
        )

        history = await sub_a.history(limit=-1)
        out["history"] = {
            "offset": history.offset,
            "epoch_matches": history.epoch == epoch,
            "publications": [
                {"data": dec(p.data), "offset": p.offset, "user": p.info.user if p.info else None}
                for p in history.publications
            ],
        }

        # Recovery: Alice goes offline, cent publishes twice, Alice comes back. Bob seeing
        # Alice's leave shows the server has dropped her connection before the publications.
        b_mark = b_log.mark()
        await a.disconnect()
        a_leave = await b_log.wait(
            "alice's leave",
            lambda e: e["ev"] == "leave" and e["info"]["client"] == a_client,
            b_mark,
        )
        out["b_saw_a_leave"] = a_leave["info"]["user"]
        out["offline_offsets"] = []
        for n in (3, 4):
            r = await api.publish(
                cent.PublishRequest(channel=CHANNEL, data={"text": "while offline", "n": n})
            )
            out["offline_offsets"].append(r.offset)
        mark = a_log.mark()
        await a.connect()
        resub = await a_log.wait(
            "resubscribe after reconnect",
            lambda e: e.get("channel") == CHANNEL and e["ev"] in ("subscribed", "unsubscribed"),
            mark,
        )
        out["resubscribe"] = {
            "ev": resub["ev"],
            "was_recovering": resub.get("was_recovering"),
            "recovered": resub.get("recovered"),
            "epoch_matches": resub.get("epoch") == epoch,
        }
        await api.publish(
            cent.PublishRequest(channel=CHANNEL, data={"text": "after recovery", "n": 5})
        )
        out["recovered_pubs"] = [
            pub_view(e, a_client)
            for e in await a_log.wait_count("recovered + live publications", is_pub, 3, mark)
        ]

        # Bob (subscribed since after the first two) saw the other three once.
        out["b_offsets"] = [
            e["offset"] for e in await b_log.wait_count("bob's publications", is_pub, 3)
        ]
        out["b_offsets_total"] = len(b_log.since(0, is_pub))

        # Bob leaves.
        mark = a_log.mark()
        await b.disconnect()
        leave = await a_log.wait(
            "bob's leave",
            lambda e: e["ev"] == "leave" and e["info"]["client"] == b_client,
            mark,
        )
        out["leave"] = {"user": leave["info"]["user"]}
        stats = await sub_a.presence_stats()
        out["presence_stats_after_leave"] = {
            "num_clients": stats.num_clients,
            "num_users": stats.num_users,
        }

        # Refused subscriptions and calls.
        for key, channel in (("unknown_namespace", "nope:py"), ("permission_denied", "locked:py")):
            mark = a_log.mark()
            sub = new_subscription(a, a_log, channel)
            await sub.subscribe()
            ev = await a_log.wait(
                f"end of subscription to {channel}",
                lambda e, ch=channel: e.get("channel") == ch
                and e["ev"] in ("subscribed", "unsubscribed"),
                mark,
            )
            out[key] = {"ev": ev["ev"], "code": ev.get("code"), "reason": ev.get("reason")}
        out["publish_denied"] = await reply_error(
            "publish to locked:py", a.publish("locked:py", enc({"n": 1}))
        )

        # Expired token: 109, then get_token supplies a fresh one.
        calls = []

        async def fresh_token() -> str:
            calls.append(1)
            return token({"sub": "py-erin", "exp": int(time.time()) + 3600})

        e, e_log = new_client(
            "py-erin",
            token=token({"sub": "py-erin", "exp": int(time.time()) - 60}),
            get_token=fresh_token,
        )
        clients.append(e)
        await connect(e, e_log)
        out["expired_token"] = {
            "get_token_calls": len(calls),
            "errors": [
                {"code": ev["code"], "reply_code": ev["reply_code"]}
                for ev in e_log.since(0, lambda ev: ev["ev"] == "error")
            ],
            "state": e.state.value,
        }

        # A token signed with the wrong secret: disconnected with 3500.
        f, f_log = new_client(
            "py-frank", token=token({"sub": "py-frank"}, "not-the-server-secret-0123456789")
        )
        clients.append(f)
        await f.connect()
        ev = await f_log.wait("disconnected", lambda ev: ev["ev"] == "disconnected")
        out["invalid_token"] = {"code": ev["code"], "reason": ev["reason"], "state": f.state.value}

        # Connection refresh. Both tokens expire in 2 s (the server closes expired connections
        # 1 s after expiry). Henry's get_token answers, so the SDK refreshes at `ttl` and stays
        # connected; Ivan's never answers, so the server closes him with 3005. Ivan's close
        # proves the expiry passed, so Henry surviving it proves the refresh was applied.
        ping_mark = a_log.mark()
        exp = int(time.time()) + 2
        henry_calls = []

        async def henry_token() -> str:
            henry_calls.append(1)
            return token({"sub": "py-henry", "exp": int(time.time()) + 3600})

        ivan_calls = []

        async def ivan_token() -> str:
            ivan_calls.append(1)
            await asyncio.Event().wait()
            return ""

        h, h_log = new_client(
            "py-henry", token=token({"sub": "py-henry", "exp": exp}), get_token=henry_token
        )
        i, i_log = new_client(
            "py-ivan", token=token({"sub": "py-ivan", "exp": exp}), get_token=ivan_token
        )
        clients.extend([h, i])
        await asyncio.gather(connect(h, h_log), connect(i, i_log))
        h_mark = h_log.mark()
        closed = await i_log.wait(
            "close of the unrefreshed connection",
            lambda ev: ev["ev"] == "connecting" and ev["code"] != 0,
            timeout=8.0,
        )
        # One round trip after Ivan's close: the server has processed Henry's refresh by now.
        try:
            await h.presence_stats("chat:probe")
        except centrifuge.ReplyError:
            pass
        out["refresh"] = {
            "henry_get_token_calls": len(henry_calls),
            "henry_state": h.state.value,
            "henry_events_after_connect": [
                {"ev": ev["ev"], "code": ev.get("code")} for ev in h_log.since(h_mark)
            ],
            "ivan_get_token_calls": len(ivan_calls),
            "ivan_close": {"code": closed["code"], "reason": closed["reason"]},
        }

        # Pings (every 2 s, pong timeout 1 s) answered by the SDK's pongs keep Alice connected.
        mark = ping_mark
        await a_log.wait_count("server pings", lambda ev: ev["ev"] == "ping", 2, mark, timeout=8.0)
        out["after_pings"] = {
            "state": a.state.value,
            "events": [
                {"ev": ev["ev"], "code": ev.get("code")}
                for ev in a_log.since(mark, lambda ev: ev["ev"] in ("connecting", "disconnected"))
            ],
        }

        out["a_unexpected"] = [
            {"ev": ev["ev"], "code": ev.get("code")}
            for ev in a_log.items
            if ev["ev"] in ("error", "sub_error")
            or (ev["ev"] == "unsubscribed" and ev.get("channel") == CHANNEL)
        ]
        return out
    finally:
        for c in clients:
            await c.disconnect()
        await api.close()


if __name__ == "__main__":
    run(main)
