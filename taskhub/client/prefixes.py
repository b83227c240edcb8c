"""Tasks named by a prefix of their msg_id, as git takes a prefix of a commit's hash.

    rc.get_result("9f3c")  ─▶ the task DB: msg_id is "9f3c", or starts with "9f3c"
                           ─▶ one task: its full msg_id; none: UnknownTaskError;
                              several: AmbiguousTaskId naming some of them

A full-length msg_id (32 hex digits) is taken as it is, without asking the task DB, so
code that passes ids it got from the cluster pays nothing.
"""
import re

from ..error import AmbiguousTaskId, NoTaskDB, UnknownTaskError

FULL_LENGTH = 32
_PREFIX = re.compile(r"^[0-9A-Za-z_.:-]+$")  # nothing $glob would read as a pattern
SHOWN = 3


def full_ids(client, ids):
    """`ids` with each prefix replaced by the one msg_id it starts."""
    return [full_id(client, m) for m in ids]


def full_id(client, prefix):
    """The msg_id `prefix` names: itself if a task has it, else the one it starts."""
    if len(prefix) >= FULL_LENGTH or not _PREFIX.match(prefix):
        return prefix
    try:
        found = client.db_query({"$or": [{"msg_id": prefix},
                                         {"msg_id": {"$glob": prefix + "*"}}]},
                                keys=["msg_id"], limit=SHOWN + 1)
    except NoTaskDB:  # no records to look in: the hub says what it knows of the id itself
        return prefix
    ids = [r["msg_id"] for r in found]
    if prefix in ids:
        return prefix
    if not ids:
        raise UnknownTaskError(f"no task in the task database has a msg_id that is or "
                               f"starts with {prefix!r}")
    if len(ids) > 1:
        some = ", ".join(ids[:SHOWN]) + (", ..." if len(ids) > SHOWN else "")
        raise AmbiguousTaskId(f"msg_id prefix {prefix!r} is ambiguous: it starts {some}; "
                              f"give more of the msg_id")
    return ids[0]
