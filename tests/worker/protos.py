"""The Functions RPC protocol as Python modules, compiled from ``proto/FunctionRpc.proto`` on first use.

Nothing generated is committed: grpcio-tools (pinned in requirements-dev.txt) compiles the proto
into ``.build/worker-protos/<hash of the proto and the tool version>/``, the same output for the same
inputs, and both sides of the stream (the host stand-in in the test process, the worker process) import
it from there. The worker venv pins the same protobuf runtime, so one compiled copy serves both.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

PROTO_DIR = Path(__file__).resolve().parent / "proto"
PROTO = PROTO_DIR / "FunctionRpc.proto"
BUILD_ROOT = Path(__file__).resolve().parents[2] / ".build" / "worker-protos"
OUT_DIR_ENV = "FUNCTIONS_RPC_PROTOS_DIR"  # set for the worker process by the host stand-in


def compile_protos() -> Path:
    """Compile the proto (once per proto text and grpcio-tools version); return the output folder."""
    from grpc_tools import protoc

    tools_version = _grpc_tools_version()
    digest = hashlib.sha256(PROTO.read_bytes() + tools_version.encode()).hexdigest()[:16]
    out = BUILD_ROOT / digest
    if (out / "FunctionRpc_pb2_grpc.py").exists():
        return out
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=BUILD_ROOT))
    include = str(Path(protoc.__file__).resolve().parent / "_proto")  # google/protobuf/*.proto
    code = protoc.main(
        [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={staging}",
            f"--grpc_python_out={staging}",
            PROTO.name,
        ]
    )
    if code != 0:
        raise RuntimeError(f"grpc_tools.protoc failed on {PROTO} (exit {code})")
    try:
        os.replace(staging, out)  # atomic: parallel test sessions never see half a folder
    except OSError:
        if not (out / "FunctionRpc_pb2_grpc.py").exists():
            raise
    return out


def _grpc_tools_version() -> str:
    from importlib.metadata import version

    return version("grpcio-tools")


def load(out_dir: Path | None = None) -> tuple[ModuleType, ModuleType]:
    """``(FunctionRpc_pb2, FunctionRpc_pb2_grpc)``, compiling first unless ``out_dir`` is given."""
    folder = str(out_dir or compile_protos())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("FunctionRpc_pb2"), importlib.import_module("FunctionRpc_pb2_grpc")
