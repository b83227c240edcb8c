"""The "none" task database: the controller keeps no task history.

Writes are accepted and forgotten, so the hub runs unchanged; every read raises NoTaskDB
so a client learns why its query cannot be answered instead of getting an empty answer.
"""
from taskhub.controller.db.base import TaskDB
from taskhub.error import NoTaskDB

NO_DB_MESSAGE = ("the controller runs without a task database (db=none); "
                 "start it with --db sqlite to keep task history")


class NoDB(TaskDB):
    """TaskDB that stores nothing."""

    def add_records(self, records):
        """Ignored: nothing is stored."""

    def update_records(self, updates):
        return []

    def find_records(self, query, keys=None, sort=None, limit=None, skip=None):
        raise NoTaskDB(NO_DB_MESSAGE)

    def drop_matching_records(self, query):
        return 0

    def drop_record(self, msg_id):
        """Ignored: nothing was stored."""
