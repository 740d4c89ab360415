"""``BodyDeadlines``: a late body becomes a 408, anything else cancelled stays cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server import http
from server.errors import ApiError
from server.http import BodyDeadlines, Request, read_body


def _request(receive: Any) -> Request:
    return Request({"type": "http", "headers": []}, receive, "POST", "")


def test_a_body_that_never_completes_is_a_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "BODY_SWEEP_S", 0.05)

    async def stalls() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def go() -> ApiError:
        with pytest.raises(ApiError) as err:
            await read_body(_request(stalls), 1000, BodyDeadlines(0.2))
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # the cancel was withdrawn
        return err.value

    error = asyncio.run(go())
    assert error.status == 408 and error.code == "request_timeout"
    assert (b"connection", b"close") in (error.headers or [])


def test_a_body_in_time_is_read_and_its_deadline_dropped() -> None:
    deadlines = BodyDeadlines(30.0)

    async def whole() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def go() -> bytes:
        body = await read_body(_request(whole), 1000, deadlines)
        assert not deadlines._due and not deadlines._late
        return body

    assert asyncio.run(go()) == b"{}"


def test_another_cancellation_is_not_turned_into_a_408() -> None:
    deadlines = BodyDeadlines(30.0)

    async def stalls() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def go() -> None:
        reader = asyncio.ensure_future(read_body(_request(stalls), 1000, deadlines))
        await asyncio.sleep(0)
        reader.cancel()  # e.g. the worker shutting down
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert not deadlines._due

    asyncio.run(go())


def test_the_deadline_comes_before_gunicorns_own_wait_for_body_data() -> None:
    # gunicorn answers a bare 500 once one wait for body data passes
    # http_timeout_s: the 408 must come first, sweep included.
    for http_timeout_s in (2.0, 3.0, 60.0):
        deadline = BodyDeadlines(http_timeout_s).timeout_s
        assert deadline > 0 and deadline + http.BODY_SWEEP_S < http_timeout_s
