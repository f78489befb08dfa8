"""`cent` against a tenant through the control plane's public endpoint: publish, history, and the
error for an unknown namespace. Env: ROTOR_API_URL, ROTOR_API_KEY. Prints one JSON object."""

import json
import os

import cent

client = cent.Client(os.environ["ROTOR_API_URL"], os.environ["ROTOR_API_KEY"], timeout=5.0)
out = {}
r = client.publish(cent.PublishRequest(channel="chat:room", data={"n": 3}))
out["publish_offset"] = r.offset
h = client.history(cent.HistoryRequest(channel="chat:room", limit=-1))
out["history_offsets"] = [p.offset for p in h.publications]
try:
    client.publish(cent.PublishRequest(channel="nope:room", data={"n": 4}))
    out["unknown_namespace_code"] = None
except cent.CentApiResponseError as e:
    out["unknown_namespace_code"] = e.code
print(json.dumps(out))
