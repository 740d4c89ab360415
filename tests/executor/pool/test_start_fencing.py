"""A start the pool writes out of turn (``Pool.store_start``:
``StartWrites.write_now``, before a reply shows the task running) is fenced
by its claim's token, like every other write about a running task (issue
16): a pool that was paused past its lease must not stamp its start on the
run that replaced it.

Real PostgreSQL store; ``StartWrites`` gets a pool reduced to its store
(``StartsOwner``, a narrow seam) and holds the unwritten start as it would.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from executor.pool.slots import Inflight
from executor.pool.starts import StartWrites
from executor.store import NewTask, open_store

LEASE_S = 30.0


def test_a_stale_claims_start_is_not_written_on_the_next_claim(postgres_url: str) -> None:
    store = open_store(postgres_url, writer=True)
    try:
        (rec,) = store.enqueue([NewTask("k", b"\x92\x90\x80", 3, 10.0)], time.time())
        (first,) = store.claim(1, time.time(), "pool-a", LEASE_S)
        assert store.started([(rec.id, time.time(), first.lease_token)]) == [rec.id]
        # Pool a stalls; its lease is taken back (as a sweep does once it
        # expires) and pool b claims the task, which waits in b's pipe.
        assert [r.id for r in store.recover(time.time(), "pool-a")] == [rec.id]
        (second,) = store.claim(1, time.time(), "pool-b", LEASE_S)
        assert second.lease_token != first.lease_token

        # Pool a wakes and is asked about the task it still thinks it runs.
        inf = Inflight(rec.id, "k", first.attempts, 3, 10.0, rec.created_at, 0.0,
                       started_at=time.time(), token=first.lease_token)
        a = SimpleNamespace(store=store, fleet=None, stopping=False,
                            schedule_turn=lambda: None)

        async def ask_a() -> None:
            starts = StartWrites(a)
            starts.add(inf)  # a's start waits for a turn
            starts.write_now(inf)  # a reply is about to show it running
            assert inf.start_stored and starts.take([]) == []  # no turn writes it again

        asyncio.run(ask_a())

        after = store.get(rec.id)
        assert after is not None
        assert (after.status, after.started_at) == ("running", None)  # b's run has not started
        # So b's death now gives the attempt back, as for any task that only waited.
        store.recover(time.time(), "pool-b")
        back = store.get(rec.id)
        assert back is not None
        assert (back.status, back.attempts) == ("pending", 1)  # a's run: the one attempt
    finally:
        store.close()
