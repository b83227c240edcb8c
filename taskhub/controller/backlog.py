"""What the DB writer keeps while the task DB cannot be written, and values too big for it.

A failing DB is a state, not a crash: each transaction the writer could not write is kept,
in order, in memory up to `memory_bytes`, past that appended to a spill file beside the DB;
once a write succeeds again every kept transaction is written, spilled ones first (they are
the oldest). The spill file outlives the controller: the next start writes it too.

    WriteBacklog.keep(adds, updates)      a transaction the DB refused (or queued behind one)
    WriteBacklog.failed(reason) -> bool   the DB refused a write (True: it was fine before)
    WriteBacklog.batches() / written()    the kept transactions, oldest first, to retry
    WriteBacklog.recovered() -> bool      nothing kept any more (True: it was failing)
"""
import collections
import os
import pickle
import time

from .db.base import BUFFER_KEYS, DICT_KEYS, KEY_KINDS

MEMORY_BYTES = 256 * 2**20  # kept in memory before they go to the spill file
_RECORD_BYTES = 512  # what a record costs besides its buffers, roughly
# where a record says which of its values are not in the DB: the dict key beside them
_NOTE_KEY = {"buffers": "metadata", "result_buffers": "result_metadata"}
NOTE = "taskhub_unstored"


def batch_bytes(adds, updates):
    """A rough size of a transaction: its buffers plus a fixed cost per record."""
    total = _RECORD_BYTES * (len(adds) + len(updates))
    for changes in [*adds, *(c for _, c in updates)]:
        for key in BUFFER_KEYS:
            total += sum(map(len, changes.get(key) or ()))
    return total


class WriteBacklog:
    def __init__(self, memory_bytes=MEMORY_BYTES, spill_path=None, clock=time.time):
        self.memory_bytes = memory_bytes
        self.spill_path = spill_path
        self.failing = False
        self.reason = None
        self.since = None
        self._clock = clock
        self._kept = collections.deque()
        self._bytes = 0
        self._spilled = 0  # transactions in the spill file
        self._spilled_records = 0
        self.written_after_failure = 0
        if spill_path and os.path.exists(spill_path):  # left by an earlier controller
            self._spilled, self._spilled_records = _count_spilled(spill_path)
            self.failing, self.reason = True, "records kept by an earlier run to write"
            self.since = self._clock()

    def keep(self, adds, updates):
        self._kept.append((adds, updates))
        self._bytes += batch_bytes(adds, updates)
        if self._bytes > self.memory_bytes and self.spill_path:
            self.spill_all()

    def failed(self, reason):
        was_ok = not self.failing
        self.failing, self.reason = True, reason
        if was_ok:
            self.since = self._clock()
        return was_ok

    def still_failing(self, reason):
        self.reason = reason

    def has_spill(self):
        return self._spilled > 0

    def batches(self):
        """The kept transactions, oldest first; call written() after writing each."""
        if self._spilled:
            self._load_spill()
        while self._kept:
            yield self._kept[0]

    def written(self):
        adds, updates = self._kept.popleft()
        self._bytes -= batch_bytes(adds, updates)
        self.written_after_failure += len(adds)

    def recovered(self):
        if self._kept or self._spilled:
            return False
        was_failing, self.failing, self.reason, self.since = self.failing, False, None, None
        self._bytes = 0
        return was_failing

    def spill_all(self):
        """Append what memory holds to the spill file (at stop, or past memory_bytes)."""
        if not self._kept or not self.spill_path:
            return
        with open(self.spill_path, "ab") as f:
            while self._kept:
                adds, updates = self._kept.popleft()
                pickle.dump((adds, updates), f, protocol=pickle.HIGHEST_PROTOCOL)
                self._spilled += 1
                self._spilled_records += len(adds) + len(updates)
        self._bytes = 0

    def _load_spill(self):
        """Put the spilled transactions (older than any in memory) back in front."""
        loaded = []
        with open(self.spill_path, "rb") as f:
            while True:
                try:
                    loaded.append(pickle.load(f))
                except EOFError:
                    break
        os.unlink(self.spill_path)
        self._spilled = self._spilled_records = 0
        self._kept.extendleft(reversed(loaded))
        self._bytes += sum(batch_bytes(a, u) for a, u in loaded)

    def state(self):
        kept = sum(len(a) + len(u) for a, u in self._kept)
        return {"db_state": "failing" if self.failing else "ok", "db_error": self.reason,
                "db_failing_since": self.since, "db_kept_in_memory": kept,
                "db_kept_in_spill_file": self._spilled_records}


def split_oversized(adds, updates, max_bytes, blob_dir):
    """Take values bigger than `max_bytes` out of the records before they are written:
    buffers go to a file under `blob_dir` (named in the record's metadata, key NOTE), text
    and dicts are cut down with a note saying so. Changes the dicts in place; returns how
    many values it moved."""
    moved = 0
    for msg_id, changes in [*((a["msg_id"], a) for a in adds), *updates]:
        for key in _SIZED.intersection(changes):  # (a set operation: this runs per record)
            value = changes[key]
            if value is None or _size(key, value) <= max_bytes:
                continue
            moved += 1
            changes[key], note = _stored_beside(msg_id, key, value, max_bytes, blob_dir)
            meta_key = _NOTE_KEY.get(key)
            if meta_key is not None:
                meta = dict(changes.get(meta_key) or {})
                meta[NOTE] = {**meta.get(NOTE, {}), key: note}
                changes[meta_key] = meta
    return moved


_SIZED = frozenset(k for k, kind in KEY_KINDS.items()
                   if kind in ("buffers", "str") or k in DICT_KEYS)  # values _size measures


def _size(key, value):
    kind = KEY_KINDS.get(key)
    if kind == "buffers":
        return sum(map(len, value))
    if kind == "str" and isinstance(value, str):
        return len(value)
    if key in DICT_KEYS:
        text = getattr(value, "json", None)
        return len(text) if text is not None else 0
    return 0


def _stored_beside(msg_id, key, value, max_bytes, blob_dir):
    """(what the DB stores instead, a note naming where the value is or why it is not)."""
    size = _size(key, value)
    reason = f"{size} bytes, over db_max_value_bytes ({max_bytes})"
    if KEY_KINDS[key] == "buffers" and blob_dir:
        from .db.sqlite import pack_buffers
        os.makedirs(blob_dir, exist_ok=True)
        path = os.path.join(blob_dir, f"{_safe(msg_id)}.{key}")
        with open(path, "wb") as f:
            f.write(pack_buffers(list(value)))
        return None, {"file": path, "bytes": size, "reason": reason}
    if KEY_KINDS[key] == "str":
        cut = max_bytes // 2
        return value[:cut] + f"\n[taskhub: {size - cut} more characters not stored: " \
            f"{reason}]", {"reason": reason}
    return ({NOTE: f"not stored: {reason}"} if key in DICT_KEYS else None), \
        {"reason": f"not stored: {reason}"}


def load_stored_beside(record):
    """Put back into `record` the buffers split_oversized stored in files (when read)."""
    from .db.sqlite import unpack_buffers
    for key, meta_key in _NOTE_KEY.items():
        note = ((record.get(meta_key) or {}).get(NOTE) or {}).get(key)
        if key in record and record[key] is None and note and note.get("file"):
            try:
                with open(note["file"], "rb") as f:
                    record[key] = unpack_buffers(f.read())
            except OSError:
                pass
    return record


def sweep_stored_beside(db, blob_dir):
    """Delete the files under `blob_dir` whose task has no record any more (purged or
    culled); returns how many. Such values are few (each over db_max_value_bytes), so
    listing them is cheap."""
    try:
        names = os.listdir(blob_dir) if blob_dir else []
    except FileNotFoundError:
        return 0
    by_id = {}
    for name in names:
        by_id.setdefault(name.rsplit(".", 1)[0], []).append(name)
    if not by_id:
        return 0
    kept = {_safe(r["msg_id"]) for r in db.find_records({"msg_id": {"$in": list(by_id)}},
                                                       ["msg_id"])}
    gone = [name for msg_id, files in by_id.items() if msg_id not in kept for name in files]
    for name in gone:
        os.unlink(os.path.join(blob_dir, name))
    return len(gone)


def _safe(msg_id):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in msg_id)


def _count_spilled(path):
    batches = records = 0
    with open(path, "rb") as f:
        while True:
            try:
                adds, updates = pickle.load(f)
            except EOFError:
                break
            except Exception:  # a torn last write: what came before still counts
                break
            batches += 1
            records += len(adds) + len(updates)
    return batches, records
