"""Retention: how much task history a controller keeps, and the culls that keep it so.

A profile may bound the history by age, by number of finished records and by the bytes of
their buffers (arguments and results). Each `period` seconds the controller culls the
oldest finished records beyond any bound — or, with `what="buffers"`, only their buffers,
keeping the record (timings, status, output) so the history stays whole while the bulky
data goes. A task that has not finished is never culled: it may yet run, be resubmitted or
be waited for.

    controller loop --due(now)?--> cull(db, now) --find_records / buffer_sizes-->  TaskDB
                                                 --drop_matching_records / update_records-->

A cull does at most `batch` records per bound, so one run holds the routing loop briefly;
the next period takes the rest. `ipcluster tasks --purge` applies the same rules once.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

FINISHED = {"completed": {"$ne": None}}
WITH_BUFFERS = {"$or": [{"buffers": {"$ne": None}}, {"result_buffers": {"$ne": None}}]}
WHAT = ("records", "buffers")


@dataclass
class Retention:
    """The bounds (0: none) and what a cull removes."""
    max_records: int = 0
    max_bytes: int = 0
    max_age: float = 0.0  # seconds
    what: str = "records"
    period: float = 60.0
    batch: int = 5000

    def __post_init__(self):
        if self.what not in WHAT:
            raise ValueError(f"retention removes 'records' or 'buffers', not {self.what!r}")
        for name in ("max_records", "max_bytes", "max_age", "period"):
            if getattr(self, name) < 0:
                raise ValueError(f"retention {name} must be 0 (no bound) or more, "
                                 f"not {getattr(self, name)!r}")
        self._next = 0.0

    @property
    def bounded(self):
        return bool(self.max_records or self.max_bytes or self.max_age)

    def due(self, clock):
        """Whether a cull is due at monotonic time `clock` (and, if so, the next one set)."""
        if not self.bounded or clock < self._next:
            return False
        self._next = clock + self.period
        return True

    def cull(self, db, now=None):
        """Apply the bounds to `db` once; returns how many records were culled (dropped, or
        stripped of their buffers)."""
        now = now or datetime.now(timezone.utc)
        victims = {}
        candidates = FINISHED if self.what == "records" else {**FINISHED, **WITH_BUFFERS}
        if self.max_age:
            old = {**candidates, "completed": {"$ne": None,
                                               "$lt": now - timedelta(seconds=self.max_age)}}
            victims.update(dict.fromkeys(_ids(db, old, self.batch)))
        if self.max_records:
            extra = db.count(candidates) - self.max_records
            if extra > 0:
                victims.update(dict.fromkeys(_ids(db, candidates, min(extra, self.batch))))
        if self.max_bytes:
            victims.update(dict.fromkeys(self._over_bytes(db, candidates, victims)))
        return self._remove(db, list(victims))

    def _over_bytes(self, db, candidates, already):
        """The oldest of `candidates` whose buffers take the total over max_bytes."""
        sizes = db.buffer_sizes(candidates)  # (msg_id, bytes), oldest first
        excess = sum(size for msg_id, size in sizes if msg_id not in already) - self.max_bytes
        out = []
        for msg_id, size in sizes:
            if excess <= 0 or len(out) >= self.batch:
                break
            if msg_id not in already:
                out.append(msg_id)
                excess -= size
        return out

    def _remove(self, db, ids):
        if not ids:
            return 0
        if self.what == "records":
            count = db.drop_matching_records({"msg_id": {"$in": ids}})
        else:
            db.update_records([(msg_id, {"buffers": None, "result_buffers": None})
                               for msg_id in ids])
            count = len(ids)
        db.commit()
        return count


def _ids(db, query, limit):
    return [r["msg_id"] for r in db.find_records(query, ["msg_id"], limit=limit)]
