"""centrifuge-python and cache recovery mode (`force_recovery_mode: "cache"` with
`auto_cache_recover`), over JSON or Protobuf (ROTOR_FORMAT): after three publications from the
server API (through `cent`), a plain subscribe gets only the latest one as its initial state,
then the next live publication.

Needs a `state` namespace in cache recovery mode with `auto_cache_recover` and subscribe
allowed for clients (see tests/src/interop.rs).

Prints one JSON object; see tests/tests/interop_python.rs for the exact expectations.
"""

from typing import Any, Dict

import cent

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

CHANNEL = "state:py"


async def main() -> Dict[str, Any]:
    out: Dict[str, Any] = {"format": FORMAT}
    api = cent.AsyncClient(API_URL, API_KEY, timeout=5.0)
    client = None
    try:
        for n in (1, 2, 3):
            await api.publish(cent.PublishRequest(channel=CHANNEL, data={"n": n}))
        client, log = new_client("py-cache", token=token({"sub": "py-cache"}))
        await connect(client, log)
        sub = new_subscription(client, log, CHANNEL)
        ev = await subscribe(sub, log)
        out["subscribed"] = {
            "was_recovering": ev["was_recovering"],
            "recovered": ev["recovered"],
            "epoch_nonempty": bool(ev["epoch"]),
        }
        await api.publish(cent.PublishRequest(channel=CHANNEL, data={"n": 4}))
        pubs = await log.wait_count("publications", lambda e: e["ev"] == "pub", 2)
        out["pubs"] = [{"n": e["data"]["n"], "offset": e["offset"]} for e in pubs]
    finally:
        if client is not None:
            await client.disconnect()
        await api.close()
    return out


if __name__ == "__main__":
    run(main)
