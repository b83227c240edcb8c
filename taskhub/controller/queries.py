"""The hub's query service: what clients and engines ask on the query socket.

Each `<kind>_request` has a handler `_q_<kind>(msg, ident) -> (content, buffers)`, the
content a dict or the JSON bytes of one (a db_reply's, made without decoding). A handler
raises to refuse: the error's class name and message go back to the asker, and the
controller carries on. A handler that needs the task DB returns a `Deferred` instead: its
`job(db)` runs on the DB worker's reader (or writer) thread, its `then(result)` back on the
loop, and the reply goes out then — the loop never waits on the DB. Handlers read the controller's state and the task DB; the only
things they change are registrations, watchers and (through the controller) resubmissions,
aborts and interrupts.
"""
import collections
import logging
import time
from datetime import datetime, timedelta, timezone

from .. import versions
from ..callables import function_id
from .. import taskstatus
from ..error import NoTaskDB, QueryError, TaskhubError, UnknownTaskError
from ..jsonutil import untag_dates
from ..session import dumps
from . import hubstate as hs
from .backlog import load_stored_beside, sweep_stored_beside
from .retention import Retention

log = logging.getLogger("taskhub.controller")

_REFUSALS = (TaskhubError, ValueError, TypeError, KeyError)


class Deferred:
    """A reply that needs the task DB: job(db) on the DB worker's `on` thread ("reader" or
    "writer"), then then(result) -> (content, buffers) or an iterator of them, on the loop."""

    def __init__(self, job, then=None, on="reader", stream=False):
        self.job, self.then, self.on, self.stream = job, then, on, stream


class QueryService:
    def __init__(self, controller):
        self.c = controller
        self.functions = {}  # fid -> serialized function, for rc.register_function
        self.engine_hosts = {}  # uuid -> (hostname, pid) of every engine that registered

    def handle(self, msg, ident):
        """The replies to `msg` from `ident`: an iterator of (content, buffers), to be sent
        as each comes. Nearly always one; a db_request's rows come in several (see _q_db),
        and a refusal after some were made comes as a last, error reply."""
        kind = msg.msg_type
        handler = getattr(self, "_q_" + kind[:-len("_request")], None) \
            if kind.endswith("_request") else None
        if handler is None:
            return iter([(_error("ValueError", f"unknown request {kind!r}"), [])])
        try:
            reply = handler(msg, ident)
        except _REFUSALS as e:
            return iter([(_error(type(e).__name__, _message(e)), [])])
        if isinstance(reply, Deferred):
            return reply
        return iter([reply]) if isinstance(reply, tuple) else _refusing(reply)

    def run(self, deferred, send, key=None):
        """Start `deferred` on the DB worker; send(replies) once it is answered. Reads of
        one `key` (the asking client) are answered in the order asked."""
        worker = self.c.dbworker

        def done(ok, value):
            if ok and deferred.then is not None:
                try:
                    value = deferred.then(value)
                except _REFUSALS as e:
                    ok, value = False, e
            if not ok:
                send(iter([self._failure(value)]))
            else:
                send(iter([value]) if isinstance(value, tuple) else _refusing(value))
        self.c.recorder.flush()
        if deferred.stream:  # each reply sent as the reader makes it
            return worker.read_stream(deferred.job, lambda ok, reply: send(
                iter([reply if ok else self._failure(reply)])), key=key)
        if deferred.on == "reader":
            return worker.read(deferred.job, done, key=key)
        worker.on_writer(deferred.job, done)

    def _failure(self, error):
        if not isinstance(error, _REFUSALS):  # the DB failed: the asker learns how
            log.warning("task DB request failed: %s: %s", type(error).__name__, error)
        return _error(type(error).__name__, _message(error)), []

    def db_warning(self):
        """A warning for query answers while the task DB cannot be written, or None."""
        state = self.c.dbworker.backlog
        if not state.failing:
            return None
        return (f"the task DB cannot be written ({state.reason}); records of the latest "
                "tasks are kept by the controller and may be missing from this answer "
                "until it can")

    # -- engines ----------------------------------------------------------------------------
    def _q_registration(self, msg, ident):
        info = msg["content"]
        resume = info.get("resume") if isinstance(info.get("resume"), dict) else None
        rec = self.c.hub.register(info.get("uuid"), info, time.monotonic(),
                                  want_id=resume and resume.get("id"))
        if resume is not None and self.c.resumer is not None:
            self.c.resumer.engine_back(rec.uuid, resume.get("holding"))
        log.info("engine %s registered (%s)", rec.id, rec.uuid)
        self.engine_hosts[rec.uuid] = (info.get("hostname"), info.get("pid"))
        if info.get("batches") is True:  # it reads batch messages (docs/messages.md)
            self.c.batch_peers.add(str(rec.uuid).encode())
        return {"status": "ok", "id": rec.id, "heartbeat_period": self.c.heartbeat_period,
                "batches": True, "output_limit": self.c.output_limit,
                "incarnation": self.c.incarnation}, []

    def _q_unregistration(self, msg, ident):
        self.c._apply(self.c.hub.handle(hs.Unregister(msg["content"].get("uuid", ""))))
        return {"status": "ok"}, []

    # -- the cluster ------------------------------------------------------------------------
    def _q_connection(self, msg, ident):
        hub = self.c.hub
        if msg["content"].get("batches") is True:  # it reads batch messages
            self.c.batch_peers.add(ident)
        engine_versions = versions_by_engine(hub)
        warn_if_versions_differ(msg["content"].get("versions"), engine_versions, ident)
        return {"status": "ok", "engines": {str(i): hub.engines[i].uuid
                                            for i in hub.up_ids()}, "batches": True,
                "engine_versions": engine_versions}, []

    def _q_queue(self, msg, ident):
        """Per engine: direct tasks waiting ('queue'), load-balanced ones ('tasks'), and
        'completed'; counts, or msg_id lists when verbose. Plus 'unassigned'."""
        content = msg["content"]
        verbose = bool(content.get("verbose"))
        ids = self._engine_ids(content.get("targets"))
        status = {str(i): self._engine_status(self.c.hub.engines[i], verbose) for i in ids}
        waiting = [t.msg_id for t in self.c.scheduler.waiting]
        status["unassigned"] = waiting if verbose else len(waiting)
        if not verbose:
            return {"status": "ok", "queue": status}, []

        def completed(db):  # each engine's "completed" holds its uuid until here
            for i in ids:
                done = db.find_records({"engine_uuid": status[str(i)]["completed"],
                                        "completed": {"$ne": None}}, keys=["msg_id"])
                status[str(i)]["completed"] = [r["msg_id"] for r in done]
            return {"status": "ok", "queue": status}, []
        return Deferred(completed)

    def _engine_status(self, rec, verbose):
        tasks = [m for m, e in self.c.scheduler.assigned.items() if e == rec.uuid]
        if not verbose:
            return {"queue": len(rec.direct), "tasks": len(tasks), "completed": rec.completed}
        return {"queue": sorted(rec.direct), "tasks": tasks, "completed": rec.uuid}

    def _engine_ids(self, targets):
        """Engine ids from a request's targets (None: all); unknown ids are refused."""
        up = self.c.hub.up_ids()
        if targets is None:
            return up
        if not (isinstance(targets, list) and all(isinstance(t, int) for t in targets)):
            raise TypeError("targets must be a list of engine ids")
        unknown = sorted(set(targets) - set(up))
        if unknown:
            raise ValueError(f"no engine with id {unknown[0]}; registered ids: {up}")
        return targets

    def _q_engines(self, msg, ident):
        """Every engine registered, and those gone since: id, uuid, host, pid, state,
        queue (tasks assigned, direct and load-balanced), tasks done, last heartbeat."""
        hub, wall_minus_mono = self.c.hub, time.time() - time.monotonic()
        assigned = collections.Counter(self.c.scheduler.assigned.values())
        engines = [_engine_info(rec, len(rec.direct) + assigned[rec.uuid], wall_minus_mono)
                   for rec in hub.engines.values()]
        engines += [{"id": i, "uuid": uuid, "state": "down",
                     **dict(zip(("host", "pid"), self.engine_hosts.get(uuid, (None, None))))}
                    for uuid, i in self.c.engine_ids.items() if uuid not in hub.by_uuid]
        return {"status": "ok", "engines": sorted(engines, key=lambda e: e["id"])}, []

    def _q_throughput(self, msg, ident):
        """Tasks completed in the last `window` seconds (from the task DB, whose index on
        `completed` makes it a range count), and tasks running or waiting now."""
        window = msg["content"].get("window", 10)
        if not isinstance(window, (int, float)) or isinstance(window, bool) \
                or not 0 < window <= 3600:
            raise ValueError(f"window must be a number of seconds in (0, 3600], not {window!r}")
        now = datetime.now(timezone.utc)
        outstanding, waiting = len(self.c.outstanding), len(self.c.scheduler.waiting)
        db_state = self.c.dbworker.state()

        def count(db):
            try:
                done = db.count({"completed": {"$gte": now - timedelta(seconds=window)}})
            except NoTaskDB:  # no history to count: the rest is still worth showing
                done = None
            return {"status": "ok", "time": now.isoformat(), "window": window,
                    "completed": done, "rate": None if done is None else done / window,
                    "outstanding": outstanding, "waiting": waiting, "db": db_state}, []
        return Deferred(count)

    def _q_stats(self, msg, ident):
        c = self.c
        return {"status": "ok", "dropped": dict(c.session.dropped),
                "engines": len(c.hub.up_ids()), "engine_limit": c.hub.engine_limit,
                "engine_limit_reason": c.hub.limit_reason, "outstanding": len(c.outstanding),
                "queued": len(c.queued),
                "refused": c.zap.counts() if c.zap is not None else {},
                "db": c.dbworker.state()}, []

    def _q_shutdown(self, msg, ident):
        return {"status": "ok"}, []

    # -- the task DB ------------------------------------------------------------------------
    def _q_db(self, msg, ident):
        """The matching records as rows (`rows: true`, docs/messages.md), in replies of at
        most ROWS_PER_REPLY records, each sent as soon as it is made (while the client
        decodes one, the task DB makes the next). The JSON text the task DB makes is spliced
        into each reply's content as it is, never decoded here. Without `rows`, as an
        earlier client reads them: one reply with a list of record dicts."""
        content = msg["content"]
        query, keys = _query(content), content.get("keys")
        page = {"sort": content.get("sort"), "limit": content.get("limit"),
                "skip": content.get("skip")}
        warning = self.db_warning()
        if content.get("rows") is True:  # each reply sent as soon as the reader made it
            return Deferred(lambda db: _refusing(_row_replies(
                db.find_rows(query, keys, chunk=ROWS_PER_REPLY, **page), warning)),
                stream=True)
        return Deferred(lambda db: _records_reply(db.find_records(query, keys, **page),
                                                  warning))

    def _q_db_count(self, msg, ident):
        """How many records match the query: the total behind a page of db_request."""
        query = _query(msg["content"])
        return Deferred(lambda db: ({"status": "ok", "count": db.count(query)}, []))

    def _q_history(self, msg, ident):
        return Deferred(lambda db: ({"status": "ok", "history": db.get_history()}, []))

    def _q_result(self, msg, ident):
        """Finished results come in the reply; pending ones are forwarded when they finish."""
        msg_ids = _str_list(msg["content"].get("msg_ids"), "msg_ids")
        pending = [m for m in msg_ids if m in self.c.outstanding]
        for msg_id in pending:
            self.c.watchers.setdefault(msg_id, []).append(ident)
        finished = [m for m in msg_ids if m not in self.c.outstanding]

        def results(db):
            done, buffers = {}, []
            for msg_id in finished:
                rec = load_stored_beside(db.get_record(msg_id))
                if rec.get("result_content") is None:
                    raise UnknownTaskError(f"task {msg_id!r} never finished: it was pending "
                                           "when the controller that ran it stopped")
                if rec.get("result_buffers") is None and rec["status"] == "ok":
                    raise UnknownTaskError(f"the result of task {msg_id!r} is no longer "
                                           "stored (culled by retention, or not kept); its "
                                           "record, status and output remain: "
                                           f"rc.db_query({{'msg_id': {msg_id!r}}})")
                done[msg_id] = _result_summary(rec)
                buffers.extend(rec.get("result_buffers") or [])
            return {"status": "ok", "pending": pending, "completed": done}, buffers
        return Deferred(results) if finished else results(None)

    def _q_goodbye(self, msg, ident):
        """A client closing: forget what the hub kept for it, so clients that come and go
        leave nothing behind (its tasks still run and are recorded)."""
        self.forget_client(ident)
        return {"status": "ok"}, []

    def forget_client(self, ident):
        """What the hub kept for client `ident` (its batch flag, the tasks it watched):
        dropped when it says goodbye, or when its connection closes without one
        (peers.py). An engine's own entries are the hub's to drop, when it dies."""
        if ident.decode("utf8", "replace") in self.c.hub.by_uuid:
            return
        self.c.batch_peers.discard(ident)
        watchers = self.c.watchers
        for msg_id in [m for m, idents in watchers.items() if ident in idents]:
            left = [i for i in watchers[msg_id] if i != ident]
            if left:
                watchers[msg_id] = left
            else:
                del watchers[msg_id]

    def _q_result_status(self, msg, ident):
        """Which of msg_ids are pending and which completed (unknown ids are an error)."""
        msg_ids = _str_list(msg["content"].get("msg_ids"), "msg_ids")
        pending = [m for m in msg_ids if m in self.c.outstanding]
        others = [m for m in msg_ids if m not in self.c.outstanding]

        def status(found):
            found = {r["msg_id"]: r for r in found}
            unknown = [m for m in msg_ids if m not in found and m not in pending]
            if unknown:
                raise UnknownTaskError(f"no task with msg_id {unknown[0]!r} in the task "
                                       "database")
            completed = [m for m in msg_ids if m in found and found[m]["completed"] is not None]
            lost = [m for m in msg_ids if m in found and found[m]["completed"] is None]
            return {"status": "ok", "pending": pending, "completed": completed,
                    "never_finished": lost}, []
        return Deferred(lambda db: db.find_records({"msg_id": {"$in": others}},
                                                   keys=["msg_id", "completed"]), status)

    def _q_purge(self, msg, ident):
        """Drop finished records by msg_id, by engine, or all of them."""
        content = msg["content"]
        jobs, targets = content.get("msg_ids"), content.get("targets")
        blobs = self.c.dbworker.blob_dir
        if jobs == "all":
            return Deferred(lambda db: _purged(db, [], None, True, blobs), on="writer")
        jobs = _str_list(jobs or [], "msg_ids")
        running = [m for m in jobs if m in self.c.outstanding]
        if running:
            raise ValueError(f"cannot purge tasks that have not finished: {running}")
        targets = self._purge_targets(targets)
        return Deferred(lambda db: _purged(db, jobs, targets, False, blobs), on="writer")

    def _q_cull(self, msg, ident):
        """Apply retention bounds once (ipcluster tasks --purge, Client.cull_results)."""
        content = msg["content"]
        bounds = {k: content.get(k) or 0 for k in ("max_records", "max_bytes", "max_age")}
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   for v in bounds.values()):
            raise TypeError(f"retention bounds must be numbers, not {bounds}")
        retention = Retention(**bounds, what=content.get("what") or "records")
        if not retention.bounded:
            raise ValueError("give at least one bound: max_records, max_bytes or max_age")

        def cull(db):
            culled, total = 0, retention.batch
            while total >= retention.batch:  # a batch at a time until nothing is over
                total = cull_once(db, retention, self.c.dbworker.blob_dir)
                culled += total
            return {"status": "ok", "culled": culled}, []
        return Deferred(cull, on="writer")

    def _purge_targets(self, targets):
        if targets is None:
            return []
        if not (isinstance(targets, list) and all(isinstance(t, int) for t in targets)):
            raise TypeError("targets must be a list of engine ids")
        return targets

    def _q_resubmit(self, msg, ident):
        msg_ids = _str_list(msg["content"].get("msg_ids"), "msg_ids")
        running = [m for m in msg_ids if m in self.c.outstanding]
        if running:
            raise ValueError(f"cannot resubmit tasks that have not finished: {running}")
        new_args = _split_frames(msg["buffers"], msg["content"].get("arg_frames"), len(msg_ids))

        def resubmit(records):
            running = [m for m in msg_ids if m in self.c.outstanding]
            if running:  # resubmitted by someone else meanwhile
                raise ValueError(f"cannot resubmit tasks that have not finished: {running}")
            return {"status": "ok", "resubmitted": self.c.resubmit(records, ident,
                                                                   new_args)}, []
        # an unknown id fails the call
        return Deferred(lambda db: [load_stored_beside(db.get_record(m)) for m in msg_ids],
                        resubmit)

    # -- stopping tasks ---------------------------------------------------------------------
    def _q_abort(self, msg, ident):
        return self._stopping(msg, self.c.abort)

    def _q_interrupt(self, msg, ident):
        return self._stopping(msg, self.c.interrupt)

    def _stopping(self, msg, stop):
        """Stop the unfinished tasks named at once (a Ctrl-C's abort must not wait for the
        task DB); the others are finished or unknown, and the reply, once the task DB has
        looked them up, is an UnknownTaskError naming one it does not know."""
        msg_ids = _str_list(msg["content"].get("msg_ids"), "msg_ids")
        others = [m for m in msg_ids if m not in self.c.outstanding]
        stop([m for m in msg_ids if m in self.c.outstanding])
        if not others:
            return {"status": "ok"}, []

        def checked(found):
            missing = [m for m in others if m not in {r["msg_id"] for r in found}]
            if missing:
                raise UnknownTaskError(f"no task has msg_id {missing[0]!r}")
            return {"status": "ok"}, []
        return Deferred(lambda db: _known(db, others), checked)

    def _q_cancel(self, msg, ident):
        """Abort those of msg_ids still waiting for an engine; the rest are left alone (the
        client asks their engines to drop them if still queued there)."""
        wanted = set(_str_list(msg["content"].get("msg_ids"), "msg_ids"))
        waiting = [t.msg_id for t in self.c.scheduler.waiting if t.msg_id in wanted]
        if waiting:
            self.c.abort(waiting)
        return {"status": "ok", "cancelled": waiting}, []

    # -- registered functions ---------------------------------------------------------------
    def _q_register_function(self, msg, ident):
        """Keep a serialized function (the one buffer) under an id derived from its bytes."""
        if len(msg["buffers"]) != 1:
            raise ValueError("register_function_request carries one buffer: the function")
        fbytes = bytes(msg["buffers"][0])
        fid = function_id(fbytes)
        self.functions[fid] = fbytes
        return {"status": "ok", "fid": fid}, []

    def _q_function(self, msg, ident):
        fid = msg["content"].get("fid")
        if fid not in self.functions:
            raise ValueError(f"no function is registered with id {fid!r} (registrations last "
                             "as long as the controller runs: register it again with "
                             "rc.register_function)")
        return {"status": "ok"}, [self.functions[fid]]


ROWS_PER_REPLY = 2000  # records in one db_reply of rows: ~2 MB of typical records


def _row_replies(chunks, warning=None):
    """(content, buffers) of one db_reply per RecordRows of `chunks`; all but the last say
    `more: true`. The first is made here, so that what find_rows raises refuses the request.
    A `warning` (the task DB is failing) goes in the first."""
    chunks = iter(chunks)
    current = next(chunks)

    def replies(current):
        note = warning
        for following in chunks:
            yield _rows_content(current, more=True, warning=note), current.buffers
            current, note = following, None
        yield _rows_content(current, more=False, warning=note), current.buffers
    return replies(current)


def _records_reply(records, warning):
    buffers, lens = [], []
    for rec in records:
        for key in ("buffers", "result_buffers"):
            bufs = rec.pop(key, None)
            lens.append((key, None if bufs is None else len(bufs)))
            buffers.extend(bufs or ())
    extra = {"db_warning": warning} if warning else {}
    return {"status": "ok", "records": records, "buffer_lens": lens, **extra}, buffers


def _purged(db, msg_ids, targets, everything, blob_dir):
    """Drop finished records (on the DB writer), and their values stored beside the DB;
    the reply to a purge_request."""
    if everything:
        dropped = db.drop_matching_records({"completed": {"$ne": None}})
        db.commit()
        sweep_stored_beside(db, blob_dir)
        return {"status": "ok", "dropped": dropped}, []
    for msg_id in msg_ids:
        db.drop_record(msg_id)
    dropped = len(msg_ids)
    for engine_id in targets:
        dropped += db.drop_matching_records({"engine_id": engine_id,
                                             "completed": {"$ne": None}})
    db.commit()
    sweep_stored_beside(db, blob_dir)
    return {"status": "ok", "dropped": dropped}, []


def cull_once(db, retention, blob_dir=None):
    """One retention pass over `db`, committed (on the DB writer), with the values stored
    beside the DB of the records it dropped; returns the count."""
    culled = retention.cull(db)
    db.commit()
    if culled:
        sweep_stored_beside(db, blob_dir)
    if culled:
        log.info("retention: culled %d finished task%s (%s)", culled,
                 "" if culled == 1 else "s", retention.what)
    return culled


def _known(db, msg_ids):
    try:
        return db.find_records({"msg_id": {"$in": msg_ids}}, ["msg_id"])
    except NoTaskDB:  # nothing to check against; stopping a finished task does nothing
        return [{"msg_id": m} for m in msg_ids]


def _rows_content(rows, more, warning=None):
    head = dumps({"status": "ok", "keys": rows.keys, **({"more": True} if more else {}),
                  **({"db_warning": warning} if warning else {})})
    return b"".join([head[:-1], b',"rows":', *rows.json_parts, b"}"])


def _refusing(replies):
    """`replies`, ended by an error reply if making one raises a refusal."""
    try:
        yield from replies
    except _REFUSALS as e:
        yield _error(type(e).__name__, _message(e)), []


def _query(content):
    query = untag_dates(content.get("query"))
    if not isinstance(query, dict):
        raise QueryError(f"a query must be a dict, not {type(query).__name__}")
    try:
        taskstatus.check_query(query)
    except ValueError as e:
        raise QueryError(str(e)) from None
    return query


def _engine_info(rec, queue, wall_minus_mono):
    """What `engines_request` tells about a registered engine; times are wall-clock ISO."""
    def wall(mono):
        return datetime.fromtimestamp(mono + wall_minus_mono, timezone.utc).isoformat()
    return {"id": rec.id, "uuid": rec.uuid, "host": rec.info.get("hostname"),
            "pid": rec.info.get("pid"), "state": "up" if rec.up else "registering",
            "queue": queue, "completed": rec.completed, "registered": wall(rec.registered),
            "last_heartbeat": wall(rec.last_beat)}


def _result_summary(rec):
    return {"header": rec.get("result_header"), "content": rec.get("result_content"),
            "metadata": {**(rec.get("result_metadata") or {}), "stdout": rec.get("stdout"),
                         "stderr": rec.get("stderr"), "engine_id": rec.get("engine_id"),
                         # when the hub took the task and its reply (AsyncResult.wall_time)
                         **{k: rec[k].isoformat() for k in ("submitted", "received")
                            if hasattr(rec.get(k), "isoformat")}},
            "nbuffers": len(rec.get("result_buffers") or [])}


def _split_frames(frames, counts, n):
    """`frames` cut into `n` runs of `counts[i]` frames (resubmit's new arguments), or None."""
    if counts is None:
        return None
    if not (isinstance(counts, list) and len(counts) == n and sum(counts) == len(frames)
            and all(isinstance(c, int) and c > 0 for c in counts)):
        raise ValueError("arg_frames must give a positive frame count for every msg_id, "
                         "adding up to the frames sent")
    it = iter(frames)
    return [[bytes(next(it)) for _ in range(c)] for c in counts]


def _str_list(value, name):
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise TypeError(f"{name} must be a list of strings")
    return value


def _message(exc):
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _error(ename, evalue):
    return {"status": "error", "ename": ename, "evalue": evalue}


def versions_by_engine(hub):
    """[{"versions": {...}, "ids": [...]}]: the engines that are up, grouped by the Python
    and serializer versions they registered with (usually one group)."""
    groups = {}
    for i in hub.up_ids():
        found = hub.engines[i].info.get("versions")
        if isinstance(found, dict):
            key = tuple(sorted(found.items(), key=lambda kv: kv[0]))
            groups.setdefault(key, {"versions": found, "ids": []})["ids"].append(i)
    return list(groups.values())


def warn_if_versions_differ(client_versions, engine_versions, ident):
    """Log (for the operator) a client whose versions differ from some engines'."""
    if not isinstance(client_versions, dict):
        return
    for group in engine_versions:
        diffs = versions.differences(client_versions, group["versions"])
        if diffs:
            log.warning("client %s: %s", ident.decode(errors="replace")[:12],
                        versions.describe(diffs, mine="the client", theirs=f"engines {group['ids']}"))
