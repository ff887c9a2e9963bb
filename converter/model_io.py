"""Read a .tflite file into the schema's object API (validated), and write one atomically."""
from __future__ import annotations

import os
import tempfile

import flatbuffers

from .errors import ModelError
from .schema import schema
from .validate_model import validate_model

FILE_IDENTIFIER = b"TFL3"


def read_model_bytes(path: str) -> bytes:
    """The bytes of a model file, with a clear error for what is not one."""
    if not os.path.exists(path):
        raise ModelError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise ModelError(f"{path}: not a file")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ModelError(f"{path}: empty file")
    return data


def parse_model(data: bytes, name: str = "model") -> "schema.ModelT":
    """Unpack TFLite flatbuffer bytes; reject what is not a readable model."""
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ModelError(f"{name}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    try:
        root = schema.Model.GetRootAs(data, 0)
        model = schema.ModelT.InitFromObj(root)
    except Exception as exc:  # the flatbuffers runtime raises many types on bad bytes
        raise ModelError(f"{name}: truncated or corrupt TFLite flatbuffer ({type(exc).__name__})") from None
    validate_model(model, name, len(data))
    return model


def load_model(path: str) -> "schema.ModelT":
    return parse_model(read_model_bytes(path), name=path)


def serialize_model(model: "schema.ModelT") -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def write_atomically(path: str, data: bytes) -> None:
    """Write data to path so that a reader never sees a half-written file."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ModelError(f"{path}: is a directory")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"{path}: cannot create the output directory ({exc.strerror})") from None
    fd, tmp = tempfile.mkstemp(prefix=".tflm-patch-", dir=directory)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _nearest_existing(directory: str) -> str:
    while not os.path.exists(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def _check_directory_can_hold(path: str, directory: str) -> None:
    existing = _nearest_existing(directory)
    if not os.path.isdir(existing):
        raise ModelError(f"{path}: cannot write there ({existing} is not a directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ModelError(f"{path}: cannot write there (directory {existing} is not writable)")


def check_output_file(path: str) -> None:
    """Refuse, before any work, an output path a file cannot be written to.

    Missing directories on the way are fine (write_atomically creates them)
    if the nearest existing one is a writable directory."""
    if os.path.isdir(path):
        raise ModelError(f"{path}: is a directory (give a file name)")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ModelError(f"{path}: exists and is not writable")
    _check_directory_can_hold(path, os.path.dirname(os.path.abspath(path)))


def check_output_directory(path: str) -> None:
    """Refuse, before any work, a path that cannot be (or become) a writable directory."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ModelError(f"{path}: exists and is not a directory")
    _check_directory_can_hold(path, os.path.abspath(path))
