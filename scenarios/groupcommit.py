"""Group commit: concurrent single events in one process written by one transaction.

A single event costs a request's worth of fixed work in intake (a transaction, ~11 statements,
one broker message) whether it comes alone or with others; a batch of 100 costs a tenth per event
(bench/intake_cpu.py). Under load a web process has several single events in its threads at
once, so they go through intake together, as a batch would, each still answered exactly as if it
had come alone (`events_accept` keeps that promise for batches, and
scenarios/tests/test_intake_batch_equivalence.py holds it to it).

No thread waits for a group to fill: the first arrival leads and runs at once with whatever is
queued, itself included; those who arrive meanwhile queue, and when the leader's group is
written the oldest of them is woken to lead the next group. Alone, an event goes through as
before; under load, each group is what came during the previous one (at most `limit`).

A group that fails other than by the database (a bug one event's data brings out) is run again
one event at a time, so that one event's fault sinks no other; a database error is every
event's alike and reaches each of them.
"""

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from django.db import InterfaceError, OperationalError
from prometheus_client import Counter

# Served by /metrics (README: Observability): their ratio is the mean group, how many single
# events each transaction wrote; 1.0 under load means groups are not forming.
GROUPS = Counter("nc_intake_groups_total", "Groups of single events written by one transaction each.")
GROUPED = Counter("nc_intake_grouped_events_total", "Single events written through group commit.")


@dataclass(eq=False, slots=True)
class _Waiting:
    key: Hashable
    item: object
    woken: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    result: object = None
    failure: BaseException | None = None


class GroupCommit:
    """`submit(key, item)` returns `run(key, items)[i]` for its item, run with the items of the
    same key submitted meanwhile by other threads of this process."""

    def __init__(self, run: Callable[[Hashable, list], list], *, limit: int = 100):
        self._run = run
        self.limit = limit
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._busy = False

    def submit(self, key: Hashable, item) -> object:
        me = _Waiting(key, item)
        with self._lock:
            self._queue.append(me)
            if not self._busy:
                self._busy = me.lead = True
        if not me.lead:
            me.woken.wait()  # written by a leader, or made the next leader
        if me.lead:
            self._lead()
        if me.failure is not None:
            raise me.failure
        return me.result

    def _lead(self) -> None:
        with self._lock:  # the leader is first in the queue: it was empty, or the leader woken from it
            group, self._queue = self._queue[: self.limit], self._queue[self.limit :]
        try:
            by_key: dict[Hashable, list[_Waiting]] = {}
            for waiting in group:
                by_key.setdefault(waiting.key, []).append(waiting)
            for key, members in by_key.items():
                self._run_group(key, members)
        finally:
            GROUPS.inc()
            GROUPED.inc(len(group))
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].woken.set()
                else:
                    self._busy = False
            for waiting in group:
                if waiting.result is None and waiting.failure is None:  # the leader was stopped
                    waiting.failure = RuntimeError("The thread writing this event's group stopped first.")
                waiting.woken.set()

    def _run_group(self, key: Hashable, members: list[_Waiting]) -> None:
        try:
            results = self._run(key, [m.item for m in members])
        except (OperationalError, InterfaceError) as err:  # the database: the same for every event
            for member in members:
                member.failure = err
            return
        except Exception as err:
            if len(members) == 1:
                members[0].failure = err
                return
            for member in members:  # one event's fault sinks no other
                try:
                    (member.result,) = self._run(key, [member.item])
                except Exception as alone:
                    member.failure = alone
            return
        for member, result in zip(members, results, strict=True):
            member.result = result
