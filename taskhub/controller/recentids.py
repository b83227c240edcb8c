"""The msg_ids of the tasks most recently taken in, so that a request reusing one is refused
before anything runs.

A request reusing the msg_id of a task still pending would mix two tasks' replies; one
reusing a finished task's would run again and could not be recorded (the task DB holds one
record per msg_id). Asking the task DB on every request would put a read on the task path;
this bounded set answers from memory (one set lookup and one insertion per task). A msg_id
older than the last `capacity` tasks is not in it: such a request runs, and the DB's own
unique key keeps the original record (DBWorker._without_duplicates counts and logs it).
At start the set is seeded with the newest msg_ids in the DB, so a restart does not open
the gap.
"""
import collections

CAPACITY = 100_000  # msg_ids remembered: ~10 MB at 100 bytes each


class RecentIds:
    """A set of at most `capacity` msg_ids; adding one more forgets the oldest."""

    def __init__(self, capacity=CAPACITY):
        self.capacity = capacity
        self._order = collections.deque()
        self._ids = set()

    def __contains__(self, msg_id):
        return msg_id in self._ids

    def __len__(self):
        return len(self._ids)

    def add(self, msg_id):
        ids, order = self._ids, self._order
        if msg_id in ids:
            return
        ids.add(msg_id)
        order.append(msg_id)
        if len(order) > self.capacity:  # capacity 0: forgotten at once
            ids.discard(order.popleft())

    def seed(self, db):
        """Remember the newest `capacity` msg_ids in `db` (oldest first, as if taken in)."""
        if not self.capacity:
            return
        newest = db.find_records({}, ["msg_id"], sort=[("submitted", -1)],
                                 limit=self.capacity)
        for record in reversed(newest):
            self.add(record["msg_id"])
