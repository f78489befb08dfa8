"""Python stubs for Rotor's gRPC contracts, generated at run time by grpcio-tools from
data-plane/proto/api.proto (Centrifugo's server API) or proxy.proto (its proxy service): a
toolchain other than the one the server is built with.
"""

import importlib
import importlib.resources
import os
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "..", "data-plane", "proto"))


def generate_stubs(proto: str = "api") -> Any:
    """Runs grpcio-tools' protoc on data-plane/proto/<proto>.proto (`api` or `proxy`) into a
    temporary package; returns its modules (pb2, pb2_grpc)."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="rotor-grpc-stubs-")
    include = importlib.resources.files("grpc_tools") / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            os.path.join(PROTO_DIR, f"{proto}.proto"),
        ]
    )
    if code != 0:
        raise AssertionError(f"protoc failed with {code}")
    sys.path.insert(0, out)
    return importlib.import_module(f"{proto}_pb2"), importlib.import_module(f"{proto}_pb2_grpc")
