"""A driver process: one System, driven by the runner over a pipe, one JSON line each way.

    python -m bench.systems.serve MODULE:CLASS OPTIONS_JSON

    runner ──▶ {"method": "map_noop", "kwargs": {"n_tasks": 2000, "timeout": 80}}
           ◀── {"result": 0.42}   |  {"error": "...", "traceback": "..."}  |  {"unsupported": "..."}

The protocol has the process's original stdin/stdout to itself: fds 0 and 1 are pointed at
/dev/null and stderr before the system is imported, so nothing a library or a child
process prints can corrupt it. The system is stopped when the pipe closes, on SIGTERM, or
on a `stop` call.
"""
import importlib
import json
import os
import signal
import sys
import traceback

from .base import BenchError, System, Unsupported

CALLS = {name for name in vars(System) if not name.startswith("_")}


def _private_pipe():
    """(reader, writer) on the original stdin/stdout; fds 0 and 1 now go elsewhere."""
    reader = os.fdopen(os.dup(0), "r", encoding="utf8")
    writer = os.fdopen(os.dup(1), "w", encoding="utf8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return reader, writer


def _load(target):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def answer(system, request):
    """The reply dict to one request dict."""
    method = request.get("method")
    if method not in CALLS:
        return {"error": f"no such call {method!r}"}
    try:
        return {"result": getattr(system, method)(**request.get("kwargs", {}))}
    except Unsupported as e:
        return {"unsupported": str(e)}
    except BenchError as e:
        return {"error": str(e)}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def main(argv):
    reader, writer = _private_pipe()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    system = _load(argv[1])(**json.loads(argv[2]))
    try:
        for line in reader:
            reply = answer(system, json.loads(line))
            writer.write(json.dumps(reply) + "\n")
            writer.flush()
    finally:
        system.stop()


if __name__ == "__main__":
    main(sys.argv)
