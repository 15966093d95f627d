"""Expose an intermediate tensor of an ONNX model as an extra output, without the `onnx` package.

An ONNX file is a protobuf ``ModelProto`` whose field 7 is the graph; a graph's outputs are its
repeated field 12 (``ValueInfoProto``, whose field 1 is the name). Protobuf lets a repeated field
be appended anywhere in its message, so appending one output entry to the graph's bytes and
rewriting the graph's length prefix is the whole edit; onnxruntime infers the new output's type
and shape. (The `onnx` package would do the same, but installing it upgrades numpy.)
"""

from __future__ import annotations

_GRAPH_FIELD, _OUTPUT_FIELD, _NAME_FIELD = 7, 12, 1
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def add_outputs(model: bytes, tensor_names: list[str]) -> bytes:
    """The model's bytes with ``tensor_names`` appended to its graph's outputs."""
    extra = b"".join(_field(_OUTPUT_FIELD, _field(_NAME_FIELD, name.encode())) for name in tensor_names)
    out = bytearray()
    i, found = 0, False
    while i < len(model):
        start = i
        key, i = _read_varint(model, i)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, i = _read_varint(model, i)
        elif wire == _FIXED64:
            i += 8
        elif wire == _FIXED32:
            i += 4
        elif wire == _LENGTH_DELIMITED:
            length, body = _read_varint(model, i)
            i = body + length
            if number == _GRAPH_FIELD and not found:
                out += _field(_GRAPH_FIELD, model[body:i] + extra)
                found = True
                continue
        else:
            raise ValueError(f"not an ONNX model (protobuf wire type {wire})")
        out += model[start:i]
    if not found:
        raise ValueError("not an ONNX model (no graph)")
    return bytes(out)
