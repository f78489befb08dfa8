"""Versioned publishes through `cent` 5.x: `version` and `version_epoch` are not fields of cent
5.2's PublishRequest, but its request models pass extra keyword fields through to the JSON
body, so the call is the one an application makes with cent today. A centrifuge-python
subscriber of a `chat` channel (history on) checks that an older version is dropped (not
delivered, not in history) while the call still succeeds with the current stream top, and
that a new `version_epoch` starts afresh.

Prints one JSON object; see tests/tests/interop_python.rs for the exact expectations.
"""

from typing import Any, Dict, List

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

CHANNEL = "chat:cent-versions"


async def main() -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    api = cent.AsyncClient(API_URL, API_KEY, timeout=5.0)
    client = None
    try:
        client, log = new_client("py-versions", token=token({"sub": "py-versions"}))
        await connect(client, log)
        await subscribe(new_subscription(client, log, CHANNEL), log)
        offsets: List[int] = []
        for n, version, epoch in [(1, 5, "a"), (2, 4, "a"), (3, 5, ""), (4, 6, "a"), (5, 1, "b")]:
            result = await api.publish(
                cent.PublishRequest(
                    channel=CHANNEL, data={"n": n}, version=version, version_epoch=epoch
                )
            )
            offsets.append(result.offset)
        out["offsets"] = offsets
        pubs = await log.wait_count("publications", lambda e: e["ev"] == "pub", 3)
        out["received"] = [e["data"]["n"] for e in pubs]
        history = await api.history(cent.HistoryRequest(channel=CHANNEL, limit=-1))
        out["history"] = [p.data["n"] for p in history.publications]
    finally:
        if client is not None:
            await client.disconnect()
        await api.close()
    return out


if __name__ == "__main__":
    run(main)
