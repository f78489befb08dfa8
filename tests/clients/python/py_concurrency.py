"""centrifuge-python against a server with `client.concurrency`: two RPCs of one client run side
by side. The backend (tests/tests/interop_python.rs) holds `slow` until `fast` has reached it and
answers `fast` at once, so `slow` succeeds only when both are in flight together. JSON or
Protobuf (ROTOR_FORMAT).

Prints one JSON object; see tests/tests/interop_python.rs for the exact expectations.
"""

import asyncio
from typing import Any, Dict

from interop_common import FORMAT, connect, dec, enc, new_client, run, token


async def main() -> Dict[str, Any]:
    client, log = new_client("py-concurrent", token=token({"sub": "py-concurrent"}))
    try:
        await connect(client, log)

        async def call(method: str) -> Any:
            result = await client.rpc(method, enc({"method": method}))
            return dec(result.data)

        slow, fast = await asyncio.gather(call("slow"), call("fast"))
        return {"format": FORMAT, "slow": slow, "fast": fast}
    finally:
        await client.disconnect()


if __name__ == "__main__":
    run(main)
