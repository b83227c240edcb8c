"""Data a task hands to its client while it runs (ipyparallel's `publish_data`).

    on an engine, in a task:   publish_data({"i": i, "loss": loss})
    in the client:             ar.data   ->  {"i": 4, "loss": 0.1}  (per task: a dict, each
                                              publish_data updating it, as dict.update)

Each call goes at once on iopub to the client that sent the task (as printed text and
display() do, see taskhub.engine.capture), so `ar.data` shows progress while the task
runs; the reply carries the final dict too, so a client that was not listening, or that
fetches the task from the task DB later, has it. Values travel pickled: anything a task
could return.
"""
import base64
import pickle

MSG_TYPE = "data_message"


def publish_data(data):
    """Publish the dict `data` from the running task to its client (ar.data is updated
    with it). Outside a task on an engine there is no client to send it to: RuntimeError."""
    from .engine.capture import current_output
    if not isinstance(data, dict):
        raise TypeError(f"publish_data takes a dict, not {type(data).__name__}")
    output = current_output()
    if output is None:
        raise RuntimeError("publish_data() sends data to the client of the running task: "
                           "call it in a task on an engine")
    output.publish_data(data)


def dumps(data):
    """The JSON-safe text a dict travels as (in iopub content and reply metadata)."""
    return base64.b64encode(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)).decode()


def loads(text):
    return pickle.loads(base64.b64decode(text))
