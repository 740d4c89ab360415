"""The wire format: golden frames pin it; bad frames are refused early."""

from __future__ import annotations

import struct

import pytest

from executor.wire.protocol import (
    HEADER_SIZE,
    FrameReader,
    FrameType,
    ProtocolError,
    decode_body,
    encode,
    parse_header,
)

# Golden frames: changing these bytes is a wire-format change (bump VERSION).
GOLDEN = [
    (FrameType.REQUEST, {"id": 1, "op": "get", "args": {"id": "abc"}},
     "4f46010100000019" "83a2696401a26f70a3676574a46172677381a26964a3616263"),
    (FrameType.REPLY, {"id": 7, "ok": True, "result": None},
     "4f46010200000011" "83a2696407a26f6bc3a6726573756c74c0"),
    (FrameType.STOP, {}, "4f4601070000000180"),
    (FrameType.RUN, {"id": "t1", "payload": b"\x92\x90\x80"},
     "4f46010300000014" "82a26964a27431a77061796c6f6164c403929080"),
]


@pytest.mark.parametrize(("ftype", "body", "hex_frame"), GOLDEN)
def test_golden_frames_encode_and_decode(ftype: FrameType, body: dict, hex_frame: str) -> None:
    frame = bytes.fromhex(hex_frame)
    assert encode(ftype, body) == frame
    assert list(FrameReader().feed(frame)) == [(ftype, body)]


def test_reader_handles_split_and_coalesced_frames() -> None:
    frames = b"".join(encode(FrameType.REPLY, {"id": i, "ok": True}) for i in range(50))
    reader = FrameReader()
    got = []
    for i in range(0, len(frames), 7):
        got.extend(reader.feed(frames[i:i + 7]))
    assert [b["id"] for _, b in got] == list(range(50))


def test_oversize_length_is_refused_from_the_header_alone() -> None:
    header = struct.pack("!2sBBI", b"OF", 1, FrameType.REQUEST, 10_000_000)
    with pytest.raises(ProtocolError) as err:
        list(FrameReader(max_frame_bytes=1_000_000).feed(header))  # no body sent at all
    assert err.value.code == "frame_too_large"


@pytest.mark.parametrize(("header", "code"), [
    (struct.pack("!2sBBI", b"XX", 1, 1, 0), "malformed_frame"),
    (struct.pack("!2sBBI", b"OF", 9, 1, 0), "unsupported_version"),
    (struct.pack("!2sBBI", b"OF", 1, 200, 0), "malformed_frame"),
])
def test_bad_headers(header: bytes, code: str) -> None:
    assert len(header) == HEADER_SIZE
    with pytest.raises(ProtocolError) as err:
        parse_header(header, 1024)
    assert err.value.code == code


def test_body_must_be_a_valid_msgpack_map() -> None:
    with pytest.raises(ProtocolError):
        decode_body(b"\x93\x01\x02\x03")  # an array
    with pytest.raises(ProtocolError):
        decode_body(b"\xc1")  # never used byte
    with pytest.raises(ProtocolError):
        decode_body(b"\x82\xa1a")  # truncated


def test_deep_nesting_is_refused() -> None:
    body = b"\x81\xa1a" + b"\x91" * 100_000 + b"\xc0"
    with pytest.raises(ProtocolError):
        decode_body(body)
