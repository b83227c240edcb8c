"""Tasks collected now and sent in one go, collected later from anywhere: the client-side
batch of the Globus Compute guide.

    fid = rc.register_function(expensive_task)     (or any callable, or 'pkg.mod:func')
    batch = rc.create_batch()                       task group: the client's, or given
    batch.add(fid, args=(1,))                       nothing is sent yet
    msg_ids = rc.batch_run(batch)                   one burst; returns once the
                                                    controller holds every task
    ...tomorrow, in another process:
    futures = Client().reload_tasks(batch.task_group_id)
"""
from .executor import _call_args, _options


class TaskBatch:
    """Calls to submit together; `add` them, then `rc.batch_run(batch)`. Each call becomes
    its own task of `task_group_id`, with the batch's task options under its own."""

    def __init__(self, task_group_id, **task_options):
        if not isinstance(task_group_id, str) or not task_group_id:
            raise TypeError(f"task_group_id must be a non-empty string, not {task_group_id!r}")
        self.task_group_id = task_group_id
        self.task_options = _options(task_options)
        self.calls = []   # (fn, args, kwargs, options)
        self.msg_ids = None

    def add(self, fn, args=(), kwargs=None, **task_options):
        """Add fn(*args, **kwargs): `fn` a callable, 'package.module:function' or an id from
        `rc.register_function`."""
        if self.msg_ids is not None:
            raise RuntimeError("this batch was already run: make a new one with "
                               "rc.create_batch()")
        args, kwargs = _call_args(args, kwargs)
        self.calls.append((fn, args, kwargs, _options(task_options)))

    def __len__(self):
        return len(self.calls)

    def __repr__(self):
        state = "sent" if self.msg_ids is not None else "not sent"
        return f"<TaskBatch of {len(self.calls)} calls, group {self.task_group_id}, {state}>"


def run(client, batch):
    """Send every call of `batch` as one burst; its msg_ids in the order added, once the
    controller has received them all."""
    if not isinstance(batch, TaskBatch):
        raise TypeError(f"batch_run takes a batch from rc.create_batch(), not "
                        f"{type(batch).__name__}")
    if batch.msg_ids is not None:
        raise RuntimeError("this batch was already run: make a new one with rc.create_batch()")
    if not batch.calls:
        batch.msg_ids = []
        return []
    executor = client.executor(task_group_id=batch.task_group_id, **batch.task_options)
    with executor.batch(label=batch.task_options.get("label")) as b:
        futures = [b.submit_ext(fn, args, kwargs, **options)
                   for fn, args, kwargs, options in batch.calls]
    batch.msg_ids = [f.msg_ids[0] for f in futures]
    executor.task_count_submitted  # noqa: B018 - confirms the controller holds them all
    return list(batch.msg_ids)
