"""Prints the versions of the pinned Python interop packages as JSON, after importing them.

Used by the harness tests to prove that tests/clients/python/.venv holds what
requirements.txt pins, and that the SDKs load and construct clients.
"""

import json
from importlib.metadata import version

import cent
import centrifuge
import jwt

# At least 32 bytes, as PyJWT recommends for HS256.
SECRET = "rotor-harness-secret-0123456789abcdef"


def main() -> None:
    # Constructing clients touches the SDKs' import-time machinery without any network I/O.
    cent.Client("http://127.0.0.1:1/api", "unused-api-key")
    centrifuge.Client("ws://127.0.0.1:1/connection/websocket")
    token = jwt.encode({"sub": "harness"}, SECRET, algorithm="HS256")
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["sub"] == "harness"

    print(
        json.dumps(
            {
                "cent": version("cent"),
                "centrifuge-python": version("centrifuge-python"),
                "pyjwt": version("PyJWT"),
            }
        )
    )


if __name__ == "__main__":
    main()
