"""A hosted project's gRPC server API through Rotor's edge, with Python grpcio (stubs generated
by grpcio-tools, see grpc_stubs.py): each call of ROTOR_GRPC_CALLS opens its own channel (and its own
connection: no subchannel shared between channels) to the
edge at ROTOR_GRPC_TARGET (host:port), naming its project by `authority` (grpcio's
`grpc.default_authority`) or by `project` (the `rotor-project` metadata entry), and publishes
`repeat` times (default 1) on `channel` with `authorization: apikey <key>`.

Prints one JSON object: for each call's `name`, the status of its last attempt (`code`, the
grpcio status name, and `message`), the offsets of the publications that went through and the
error codes of replies that carried one.
"""

import asyncio
import json
import os
import sys
from typing import Any, Dict

from grpc_stubs import generate_stubs


async def run_call(pb: Any, pb_grpc: Any, target: str, spec: Dict[str, Any]) -> Dict[str, Any]:
    import grpc

    # grpcio shares connections between channels to one target unless told not to; a call
    # must not ride an earlier call's connection, which the edge has already routed.
    options = [("grpc.use_local_subchannel_pool", 1)]
    if spec.get("authority"):
        options.append(("grpc.default_authority", spec["authority"]))
    metadata = [("authorization", f"apikey {spec['key']}")]
    if spec.get("project"):
        metadata.append(("rotor-project", spec["project"]))
    result: Dict[str, Any] = {"code": "OK", "message": "", "offsets": [], "errors": []}
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        api = pb_grpc.CentrifugoApiStub(channel)
        for n in range(spec.get("repeat", 1)):
            try:
                reply = await api.Publish(
                    pb.PublishRequest(
                        channel=spec["channel"], data=json.dumps({"n": n}).encode()
                    ),
                    metadata=tuple(metadata),
                    timeout=10,
                )
            except grpc.aio.AioRpcError as e:
                result["code"] = e.code().name
                result["message"] = e.details() or ""
                break
            if reply.HasField("error"):
                result["errors"].append(reply.error.code)
            else:
                result["offsets"].append(reply.result.offset)
    return result


async def main() -> Dict[str, Any]:
    pb, pb_grpc = generate_stubs()
    target = os.environ["ROTOR_GRPC_TARGET"]
    calls = json.loads(os.environ["ROTOR_GRPC_CALLS"])
    out: Dict[str, Any] = {}
    for spec in calls:
        out[spec["name"]] = await run_call(pb, pb_grpc, target, spec)
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
    sys.stdout.flush()
