"""publish_data: a task sends values to its client while it runs (ipyparallel's datapub).

    # in a task, on an engine
    from taskhub.datapub import publish_data
    publish_data({"done": i, "of": n})
    # in the client
    ar.data       # the task's published dicts merged, the latest value of each key

Each call is one `data_pub` message on iopub, the dict pickled into its buffers as results
are; the client merges it into the task's metadata["data"] as it comes. The reply counts
the calls (metadata "data_published"), so `ar.wait_for_output()` waits until every one
has come, even those that arrive after the reply (iopub is another socket).
"""
from . import serialize
from .engine.capture import current_output


def publish_data(data):
    """Send the dict `data` to the client of the task running now (see the module)."""
    if not isinstance(data, dict):
        raise TypeError(f"publish_data takes a dict, not {type(data).__name__}")
    output = current_output()
    if output is None:
        raise RuntimeError("publish_data() sends data to the client of the running task: "
                           "call it in a task on an engine")
    output.publish_data(serialize.serialize(data))
