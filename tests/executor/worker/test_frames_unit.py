"""``take_frame``: an executor takes one whole frame at a time from its task
pipe (real pipes, no processes): nothing waiting, a frame, a frame whose
rest is still on its way, the pipe's end, and a header over the limit."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import pytest

from executor.wire.protocol import HEADER_SIZE, FrameType, ProtocolError, encode
from executor.worker.frames import EMPTY, take_frame

LIMIT = 1024 * 1024


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    os.set_blocking(r, False)  # as an executor's end of its task pipe
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):  # closed by the test
            os.close(fd)


def test_an_empty_pipe_gives_empty_and_frames_come_one_at_a_time(
        pipe: tuple[int, int]) -> None:
    r, w = pipe
    assert take_frame(r, LIMIT) is EMPTY
    os.write(w, encode(FrameType.RUN, {"id": "a"}) + encode(FrameType.RUN, {"id": "b"}))
    assert take_frame(r, LIMIT) == (FrameType.RUN, {"id": "a"})
    assert take_frame(r, LIMIT) == (FrameType.RUN, {"id": "b"})
    assert take_frame(r, LIMIT) is EMPTY


def test_a_frame_begun_is_read_to_its_end(pipe: tuple[int, int]) -> None:
    r, w = pipe
    frame = encode(FrameType.RUN, {"id": "slow", "payload": b"x" * 10_000})
    os.write(w, frame[:HEADER_SIZE - 3])  # not even the whole header yet
    rest = threading.Timer(0.05, os.write, (w, frame[HEADER_SIZE - 3:]))
    rest.start()
    try:
        got = take_frame(r, LIMIT)
    finally:
        rest.join()
    assert got == (FrameType.RUN, {"id": "slow", "payload": b"x" * 10_000})


def test_the_pipes_end_gives_none_also_inside_a_frame(pipe: tuple[int, int]) -> None:
    r, w = pipe
    frame = encode(FrameType.RUN, {"id": "cut"})
    os.write(w, frame[:-1])
    os.close(w)
    assert take_frame(r, LIMIT) is None  # the pool died mid-frame
    assert take_frame(r, LIMIT) is None


def test_a_frame_over_the_limit_is_refused_before_its_body_is_read(
        pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, encode(FrameType.RUN, {"id": "big", "payload": b"x" * 2000}))
    with pytest.raises(ProtocolError) as err:
        take_frame(r, 1000)
    assert err.value.code == "frame_too_large"
    assert len(os.read(r, 4096)) > 2000  # the body is still in the pipe
