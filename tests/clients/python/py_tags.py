"""centrifuge-python and publication tags filters (`allow_tags_filter`, the SDK's
`tags_filter`), over JSON or Protobuf (ROTOR_FORMAT): publications from the server API (through
`cent`, with tags) reach a filtered subscriber only when their tags match, live and in recovery;
a namespace without `allow_tags_filter` refuses the filter (the subscription ends with 107).

Needs the `tags` and `chat` namespaces of tests/src/interop.rs.

Prints one JSON object; see tests/tests/interop_python.rs for the exact expectations.
"""

from typing import Any, Dict, List

import cent
from centrifuge import Filter, StreamPosition

from interop_common import (
    API_KEY,
    API_URL,
    FORMAT,
    connect,
    new_client,
    new_subscription,
    run,
    subscribe,
    token,
)

CHANNEL = "tags:py"


async def main() -> Dict[str, Any]:
    out: Dict[str, Any] = {"format": FORMAT}
    api = cent.AsyncClient(API_URL, API_KEY, timeout=5.0)
    clients: List[Any] = []

    async def publish(n: int, ticker: str, price: str) -> None:
        await api.publish(
            cent.PublishRequest(
                channel=CHANNEL, data={"n": n}, tags={"ticker": ticker, "price": price}
            )
        )

    try:
        client, log = new_client("py-tags", token=token({"sub": "py-tags"}))
        clients.append(client)
        await connect(client, log)

        refused = new_subscription(
            client, log, "chat:py-tags", tags_filter=Filter.eq("ticker", "AAPL")
        )
        start = log.mark()
        await refused.subscribe()
        ev = await log.wait(
            "the refusal",
            lambda e: e.get("channel") == "chat:py-tags" and e["ev"] == "unsubscribed",
            start,
        )
        out["refused"] = {"code": ev["code"]}

        # (ticker == AAPL and price >= 100) or ticker == GOOG, positioned through recovery.
        tags_filter = Filter.any(
            Filter.all(Filter.eq("ticker", "AAPL"), Filter.gte("price", "100")),
            Filter.eq("ticker", "GOOG"),
        )
        sub = new_subscription(client, log, CHANNEL, recoverable=True, tags_filter=tags_filter)
        first = await subscribe(sub, log)
        epoch = first["epoch"]
        await publish(1, "AAPL", "150")
        await publish(2, "MSFT", "300")
        await publish(3, "AAPL", "99")
        await publish(4, "GOOG", "1")
        pubs = await log.wait_count("publications", lambda e: e["ev"] == "pub", 2)
        out["pubs"] = [{"n": e["data"]["n"], "offset": e["offset"]} for e in pubs]

        # Another client recovers from offset 1 (the SDK's `get_state` gives the position) with
        # `ticker != AAPL`.
        async def state(_channel: str) -> StreamPosition:
            return StreamPosition(offset=1, epoch=epoch)

        other, other_log = new_client("py-tags-2", token=token({"sub": "py-tags-2"}))
        clients.append(other)
        await connect(other, other_log)
        rec = new_subscription(
            other,
            other_log,
            CHANNEL,
            recoverable=True,
            get_state=state,
            tags_filter=Filter.neq("ticker", "AAPL"),
        )
        ev = await subscribe(rec, other_log)
        out["recovery"] = {"was_recovering": ev["was_recovering"], "recovered": ev["recovered"]}
        recovered = await other_log.wait_count("recovered", lambda e: e["ev"] == "pub", 2)
        out["recovered_pubs"] = [{"n": e["data"]["n"], "offset": e["offset"]} for e in recovered]
        out["pub_count"] = len(log.since(0, lambda e: e["ev"] == "pub"))
    finally:
        for c in clients:
            await c.disconnect()
        await api.close()
    return out


if __name__ == "__main__":
    run(main)
