"""Notebook users: engines that run code through IPython, the %px magics in a real IPython
session and in a real Jupyter kernel, and joblib's Parallel on the cluster."""
import os
import queue
import sys
import threading
from datetime import datetime, timezone

import pytest

IPython = pytest.importorskip("IPython", reason="IPython is in the test extra")
from IPython.utils.io import capture_output  # noqa: E402
from conftest import wait_until  # noqa: E402

from taskhub import RemoteError  # noqa: E402
from taskhub.executereply import ExecuteReply  # noqa: E402
from taskhub.magics import AlreadyDisplayedError, Options, parse_targets  # noqa: E402
from taskhub.paths import security_file  # noqa: E402


@pytest.fixture(scope="module")
def ip():
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython
    return get_ipython() or start_ipython()


# -- engines that speak IPython -------------------------------------------------------------
def test_execute_runs_magics_and_returns_an_execute_reply(rc):
    view = rc[:]
    view.execute("a = 5", block=True)
    ar = view.execute("%whos", block=False)
    ar.get(timeout=30)
    for stdout in ar.stdout:
        assert ["a", "int", "5"] in [line.split() for line in stdout.splitlines()]
    reply = rc[rc.ids[0]].execute("a * 2", silent=False, block=True).get()
    assert isinstance(reply, ExecuteReply)
    assert str(reply) == f"<ExecuteReply[{reply.execution_count}]: 10>"
    assert reply.data == {"text/plain": "10"}


def test_display_in_execute_and_in_apply_is_kept_per_task(rc):
    view = rc[:]
    view.execute("from IPython.display import display, HTML", block=True)
    ar = view.execute("[display(i) for i in range(3)]", block=False)
    ar.get(timeout=30)
    assert [[o["data"] for o in outputs] for outputs in ar.outputs] == \
        [[{"text/plain": str(j)} for j in range(3)]] * len(view.targets if
                                                             isinstance(view.targets, list)
                                                             else rc.ids)

    def publish():
        from IPython.display import display
        display("from apply")
    ar = rc.load_balanced_view().apply(publish)
    ar.get(timeout=30)
    assert [o["data"]["text/plain"] for o in ar.outputs] == ["'from apply'"]
    html = rc[rc.ids[0]].execute("HTML('<b>bold</b>')", silent=False, block=True).get()
    assert html._repr_html_() == "<b>bold</b>"


def test_an_error_in_execute_is_the_task_s_error(rc):
    with pytest.raises(RemoteError) as info:
        rc[rc.ids[0]].execute("1/0", block=True)
    assert info.value.ename == "ZeroDivisionError"


def test_display_calls_are_published_one_message_each_between_the_stream_chunks():
    from taskhub.engine.capture import DISPLAY, TaskOutput, iopub_message
    out = TaskOutput({"msg_id": "m"})
    out.write("stdout", "a\n")
    out.display({"text/plain": "1"})
    out.display({"text/plain": "2", "image/png": "iVBOR"}, {"image/png": {"width": 4}})
    out.write("stdout", "b\n")
    chunks = out.take_unpublished(max_chars=4)  # "a\n" and the first display, about
    assert [name for name, _ in chunks] == ["stdout", DISPLAY]
    out.unpublish(chunks[1:])  # iopub refused the display: it goes first next time
    chunks = out.take_unpublished()
    assert [iopub_message(*c) for c in chunks] == [
        ("display_data", {"data": {"text/plain": "1"}, "metadata": {}}, []),
        ("display_data", {"data": {"text/plain": "2", "image/png": "iVBOR"},
                          "metadata": {"image/png": {"width": 4}}}, []),
        ("stream", {"name": "stdout", "text": "b\n"}, [])]
    assert out.pending == 0 and len(out.rich_metadata()["outputs"]) == 2  # the reply's


# -- the magics in a real IPython session ---------------------------------------------------
def test_px_runs_on_every_engine_and_shows_output_per_engine(rc, ip):
    view = rc.activate()
    ip.run_line_magic("px", "b = 7")
    assert view.pull("b", block=True) == [7] * len(rc.ids)
    with capture_output() as io:
        ip.run_line_magic("px", "import os; print('pid', os.getpid())")
    for engine in rc.ids:
        assert f"[stdout:{engine}] pid " in io.stdout
    with capture_output() as io:
        ip.run_cell_magic("px", "--targets 0", "b + 1")
    assert io.stdout.strip().startswith("Out[0:") and io.stdout.strip().endswith("8")


def test_a_remote_error_shows_each_engine_s_traceback_once(rc, ip):
    rc.activate(suffix="err")
    with capture_output() as io, pytest.raises(AlreadyDisplayedError) as info:
        ip.run_line_magic("pxerr", "1/0")
    assert io.stderr.count("ZeroDivisionError: division by zero") == len(rc.ids)
    assert info.value.render_traceback() == [f"{len(rc.ids)} errors"]
    assert isinstance(info.value, RemoteError)  # `except RemoteError` catches it too


def test_px_streams_output_while_the_cell_runs(rc, ip, tmp_path):
    rc.activate(suffix="stream")
    gate = tmp_path / "gate"
    seen = queue.Queue()

    def open_gate_once_streamed(stream):
        try:
            wait_until(lambda: "[stdout:0] before the gate" in stream.getvalue(),
                       timeout=30, what="the first line to be shown")
            seen.put(True)
        except AssertionError:
            seen.put(False)
        gate.touch()

    cell = (f"import os, time\nprint('before the gate', flush=True)\n"
            f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)\nprint('after')")
    with capture_output() as io:
        opener = threading.Thread(target=open_gate_once_streamed, args=(sys.stdout,))
        opener.start()
        ip.run_cell_magic("pxstream", "--targets 0", cell)
        opener.join()
    assert seen.get_nowait() is True  # shown while the engine still waited for the gate
    assert "[stdout:0] after" in io.stdout


def _gated(gate, before, after):
    """Engine code: `before`, then wait (60 s at most, then it says so) for the file `gate`,
    then `after`."""
    return (f"import os, time\n{before}\nfor _ in range(6000):\n"
            f"    if os.path.exists({str(gate)!r}): break\n    time.sleep(0.01)\n"
            f"else:\n    print('gate never opened')\n{after}\n")


def test_display_outputs_arrive_while_the_task_runs_and_once(rc, tmp_path):
    gate = tmp_path / "gate"

    def show_then_wait(gate):
        import os
        import time
        from IPython.display import display
        display("before the gate")
        for _ in range(6000):
            if os.path.exists(gate):
                break
            time.sleep(0.01)
        display("after the gate")

    rc[:].execute("import IPython.core.interactiveshell", block=True)  # a shell on engines
    ar = rc[rc.ids[0]].apply(show_then_wait, str(gate))
    wait_until(lambda: ar.outputs, timeout=30, what="the first display() on iopub")
    assert not ar.done()  # it came while the task waited for the gate
    assert [o["data"]["text/plain"] for o in ar.outputs] == ["'before the gate'"]
    gate.touch()
    ar.get(timeout=30)
    assert [o["data"]["text/plain"] for o in ar.outputs] == ["'before the gate'",
                                                              "'after the gate'"]


def test_px_shows_display_outputs_before_the_cell_ends_and_once(rc, ip, tmp_path):
    rc.activate(suffix="disp")
    gate = tmp_path / "gate"
    seen = queue.Queue()

    def html_of(io):
        return [o.data.get("text/html") for o in list(io.outputs)]

    def open_gate_once_shown(io):
        try:
            wait_until(lambda: "<b>first</b>" in html_of(io), timeout=30,
                       what="the display() to be shown")
            seen.put(True)
        except AssertionError:
            seen.put(False)
        gate.touch()

    cell = _gated(gate, "from IPython.display import display, HTML\n"
                        "display(HTML('<b>first</b>'))", "display(HTML('<b>second</b>'))")
    with capture_output() as io:
        opener = threading.Thread(target=open_gate_once_shown, args=(io,))
        opener.start()
        ip.run_cell_magic("pxdisp", "--targets 0", cell)
        opener.join()
    assert seen.get_nowait() is True  # shown while the engine still waited for the gate
    assert html_of(io) == ["<b>first</b>", "<b>second</b>"]  # each once, in order
    assert io.stdout.count("[output:0]") == 2


def test_stream_output_shows_output_as_it_comes_and_each_display_once(rc, ip, tmp_path):
    gate = tmp_path / "gate"
    cell = _gated(gate, "from IPython.display import display\nprint('waiting', flush=True)\n"
                        "display('shown early')", "print('after')")
    ar = rc[rc.ids[0]].execute(cell, block=False)
    with capture_output() as io:
        with ar.stream_output():
            wait_until(lambda: "'shown early'" in [o.data["text/plain"] for o in io.outputs],
                       timeout=30, what="the display() to be shown")
            assert "[stdout:0] waiting" in io.stdout and not ar.done()
            gate.touch()
            ar.get(timeout=30)
    assert "[stdout:0] after" in io.stdout and "gate never opened" not in io.stdout
    assert [o.data["text/plain"] for o in io.outputs] == ["'shown early'"]


def test_a_long_px_cell_shows_a_progress_bar(rc, ip, tmp_path):
    rc.activate(suffix="prog")
    gate = tmp_path / "gate"

    def open_gate_once_waiting(stream):
        # engine 1's header while its task runs (its reply, which names it, is not in)
        wait_until(lambda: "[stdout:1] waiting" in stream.getvalue(), timeout=30,
                   what="the cell to be waiting")
        gate.touch()

    with capture_output() as io:
        opener = threading.Thread(target=open_gate_once_waiting, args=(sys.stdout,))
        opener.start()
        ip.run_cell_magic("pxprog", "--targets 1 --progress-after 0",
                          _gated(gate, "print('waiting', flush=True)", "print('done')"))
        opener.join()
    # not a terminal: the text bar writes its line when the cell ends, on stdout (where
    # ipyparallel draws it: a cell's stderr has only what the engines printed there)
    assert "%px [##############################] 1/1 tasks" in io.stdout
    assert io.stderr == ""
    with capture_output() as io:
        ip.run_cell_magic("pxprog", "--targets 0 --progress-after -1",
                          _gated(gate, "pass", "print('done')"))
    assert "[stdout:0] done" in io.stdout and "%px [" not in io.stdout
    with pytest.raises(ValueError, match="--progress-after takes seconds"):
        Options().parse("--progress-after soon")


def test_noblock_pxresult_pxconfig_and_autopx(rc, ip):
    rc.activate(suffix="x")
    ip.run_line_magic("pxconfigx", "--noblock --verbose")
    with capture_output() as io:
        ar = ip.run_cell_magic("pxx", "", "print('later')")
    # the view of "all" engines, lazily (as ipyparallel says it)
    assert io.stdout.startswith("Async parallel execution on engine(s): all")
    with capture_output() as io:
        ip.run_line_magic("pxresultx", "")
    assert "[stdout:0] later" in io.stdout and ar.done()
    ip.run_line_magic("pxconfigx", "--block --no-verbose")
    ip.run_line_magic("autopxx", "")
    try:
        ip.run_cell("c = 'on the engines'")
    finally:
        ip.run_cell("%autopxx")
    assert rc[:].pull("c", block=True) == ["on the engines"] * len(rc.ids)
    assert ip.user_ns.get("c") != "on the engines"


def test_px_options_say_what_is_wrong():
    with pytest.raises(ValueError, match="unknown %px option '--bogus'"):
        Options().parse("--bogus code")
    with pytest.raises(ValueError, match="--group-outputs is one of type, engine, order"):
        Options().parse("--group-outputs=nope")
    opts, rest = Options().parse("--targets ::2 --noblock -o res")
    assert (opts.targets, opts.block, opts.save_name, rest) == (slice(None, None, 2), False,
                                                               "res", "")
    assert parse_targets("1,3") == [1, 3] and parse_targets("all") == "all"


# -- a real Jupyter kernel ------------------------------------------------------------------
def _run_in_kernel(kc, code, timeout=60):
    """({stream name: text}, error names) of one cell run in the kernel."""
    msg_id = kc.execute(code)
    out, errors = {"stdout": "", "stderr": ""}, []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out[content["name"]] += content["text"]
        elif kind == "error":
            errors.append(content["ename"])
        elif kind == "status" and content["execution_state"] == "idle":
            return out, errors


def test_a_notebook_cell_with_px_in_a_jupyter_kernel(cluster):
    jupyter_client = pytest.importorskip("jupyter_client")
    km, kc = jupyter_client.manager.start_new_kernel(
        kernel_name="python3", env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        conn = security_file(cluster.profile_dir, "client")
        out, errors = _run_in_kernel(kc, f"import taskhub\nrc = taskhub.Client({str(conn)!r})\n"
                                         f"rc.wait_for_engines(2, timeout=30)\n"
                                         f"view = rc.activate()")
        assert errors == []
        out, errors = _run_in_kernel(kc, "%%px\nimport os\nprint('engine says hi')")
        assert errors == [] and out["stdout"].count("engine says hi") == len(cluster.engines)
        assert "[stdout:0] engine says hi" in out["stdout"]
        out, errors = _run_in_kernel(kc, "%px 1/0")
        assert errors == ["AlreadyDisplayedError"]  # shown by the kernel as one line
        # each engine's traceback once, starting at the cell's code
        assert out["stderr"].count("ZeroDivisionError: division by zero") == len(cluster.engines)
        assert "[0:execute]:" in out["stderr"] and "interactiveshell.py" not in out["stderr"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_jupyter_cell_shows_display_data_and_a_progress_widget_as_they_come(cluster,
                                                                             tmp_path):
    jupyter_client = pytest.importorskip("jupyter_client")
    pytest.importorskip("ipywidgets")
    gate = tmp_path / "gate"
    km, kc = jupyter_client.manager.start_new_kernel(
        kernel_name="python3", env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        conn = security_file(cluster.profile_dir, "client")
        _, errors = _run_in_kernel(kc, f"import taskhub\nrc = taskhub.Client({str(conn)!r})\n"
                                       f"rc.wait_for_engines(2, timeout=30)\nrc.activate()")
        assert errors == []
        cell = "%%px --targets 0 --progress-after 0\n" + _gated(
            gate, "from IPython.display import display, HTML\n"
                  "display(HTML('<b>engine figure</b>'))", "print('after the gate')")
        events = _events_of_cell(kc, kc.execute(cell), gate)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert "error" not in events and "stdout:[stdout:0] gate never opened" not in events
    figure, widget = events.index("figure"), events.index("widget")
    assert events.count("figure") == 1  # streamed, and not shown again at the end
    assert max(figure, widget) < events.index("stdout:[stdout:0] after the gate"), events


def _events_of_cell(kc, msg_id, gate, timeout=60):
    """What the kernel published for one cell, in order: "figure" (the engine's HTML),
    "widget" (a progress bar), "stdout:<line>", "error"; opens `gate` once the figure and
    the widget were both published (the engine waits for it)."""
    events = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "display_data" and "engine figure" in content["data"].get("text/html", ""):
            events.append("figure")
        elif kind == "display_data" and \
                "application/vnd.jupyter.widget-view+json" in content["data"]:
            events.append("widget")
        elif kind == "stream" and content["name"] == "stdout":
            events += [f"stdout:{line}" for line in content["text"].splitlines()]
        elif kind == "error":
            events.append("error")
        elif kind == "status" and content["execution_state"] == "idle":
            return events
        if "figure" in events and "widget" in events:
            gate.touch()


# -- joblib ---------------------------------------------------------------------------------
def test_joblib_parallel_runs_on_the_engines_and_is_recorded(rc):
    joblib = pytest.importorskip("joblib")
    since = datetime.now(timezone.utc)
    rc.load_balanced_view().register_joblib_backend(name="taskhub-test")
    with joblib.parallel_config(backend="taskhub-test", n_jobs=-1):
        squares = joblib.Parallel()(joblib.delayed(pow)(i, 2) for i in range(100))
    assert squares == [i * i for i in range(100)]
    records = rc.db_query({"submitted": {"$gte": since}}, keys=["msg_id", "engine_uuid"])
    batches = rc.get_result([r["msg_id"] for r in records]).get(timeout=30)
    assert sorted(x for batch in batches for x in batch) == squares  # every call recorded


# -- update_display and clear_output from the engines ---------------------------------------
def test_display_messages_leave_the_outputs_a_notebook_would_show():
    from taskhub import displays
    p = {"data": {"text/plain": "0%"}, "transient": {"display_id": "p"}}
    steps = [(displays.DISPLAY, {"data": {"text/plain": "first"}}),
             (displays.DISPLAY, p),
             (displays.UPDATE, dict(p, data={"text/plain": "50%"})),
             (displays.UPDATE, {"data": {"text/plain": "no such id"},
                                "transient": {"display_id": "q"}}),
             (displays.CLEAR, {"wait": True}),   # waits for the next output
             (displays.UPDATE, dict(p, data={"text/plain": "100%"}))]
    outputs, pending = [], False
    for kind, content in steps:
        outputs, pending = displays.apply(outputs, kind, content, pending)
    assert [o["data"]["text/plain"] for o in outputs] == ["first", "100%"] and pending
    assert outputs[1]["transient"] == {"display_id": "p"}
    outputs, pending = displays.apply(outputs, displays.DISPLAY, {"data": {"text/plain": "x"}},
                                      pending)
    assert [o["data"]["text/plain"] for o in outputs] == ["x"] and not pending
    assert displays.apply(outputs, displays.CLEAR, {"wait": False}) == ([], False)
    with pytest.raises(ValueError):
        displays.apply(outputs, "stream", {})


def test_the_display_log_stays_as_short_as_what_it_shows():
    from taskhub.displays import CLEAR, DISPLAY, UPDATE, log_event
    p = {"data": {}, "transient": {"display_id": "p"}}
    log = []
    log_event(log, DISPLAY, p, 1)
    for seq in range(2, 1002):  # a progress display updated a thousand times
        log_event(log, UPDATE, p, seq)
    assert [(seq, kind) for seq, kind, _ in log] == [(1, DISPLAY), (1001, UPDATE)]
    for seq in range(1002, 1202, 2):  # clear_output(wait=True); display(frame), in a loop
        log_event(log, CLEAR, {"wait": True}, seq)
        log_event(log, DISPLAY, {"data": {}}, seq + 1)
    assert [(seq, kind) for seq, kind, _ in log] == [(1198, CLEAR), (1199, DISPLAY),
                                                     (1200, CLEAR), (1201, DISPLAY)]


def test_engine_publishes_update_display_and_clear_output_in_order():
    from taskhub.engine.capture import TaskOutput, iopub_message
    out = TaskOutput({"msg_id": "m"})
    out.display({"text/plain": "0%"}, transient={"display_id": "p"})
    out.write("stdout", "a\n")
    out.display({"text/plain": "50%"}, transient={"display_id": "p"}, update=True)
    out.clear_output(wait=False)
    out.write("stdout", "b\n")
    assert [iopub_message(*c)[0] for c in out.take_unpublished()] == [
        "display_data", "stream", "update_display_data", "clear_output", "stream"]
    assert out.rich_metadata() == {"outputs": [], "display_messages": 3}  # cleared: so said


_PROGRESS_CELL = """
from IPython.display import display, update_display, clear_output
display('0%', display_id='progress')
print('working', flush=True)
update_display('100%', display_id='progress')
display('old')
clear_output(wait=True)
display('final')
"""


def test_update_display_and_clear_output_reach_the_client_and_the_record(rc):
    ar = rc[rc.ids[0]].execute(_PROGRESS_CELL, block=False)
    ar.get(timeout=30)
    assert [o["data"]["text/plain"] for o in ar.outputs] == ["'final'"]  # the reply's
    assert ar.wait_for_output(30)  # and the iopub messages the reply may have overtaken
    got, log = ar._display_events(ar.msg_ids[0])
    kinds = [kind for _, kind, *_ in log]
    assert kinds == ["display_data", "update_display_data", "display_data", "clear_output",
                     "display_data"]  # each as the engine sent it, while the task ran
    record = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["metadata"])
    assert record  # the task DB has the task; its reply's outputs are what is displayed
    stored = rc.get_result(ar.msg_ids[0], owner=False)
    stored.get(timeout=30)
    assert [o["data"]["text/plain"] for o in stored.outputs] == ["'final'"]


def test_a_task_updating_a_display_fast_keeps_client_and_record_small(rc, ip):
    cell = ("from IPython.display import display, update_display\n"
            "display('step 0', display_id='p')\n"
            "for i in range(1, 20001):\n"
            "    update_display(f'step {i}', display_id='p')\n")
    rc.activate(suffix="flood")
    with capture_output(display=False) as io:
        ip.run_cell_magic("pxflood", "--targets 0 -o flood", cell)
    ar = ip.user_ns["flood"]
    assert ar.wait_for_output(30)
    got, log = ar._display_events(ar.msg_ids[0])
    assert got == 20001 and len(log) <= 2  # every message came; few are kept
    assert [o["data"]["text/plain"] for o in ar.outputs] == ["'step 20000'"]
    shown = [line for line in io.stdout.splitlines() if line.startswith("'step ")]
    assert shown[0] == "'step 0'" and shown[-1] == "'step 20000'"  # the last state, and
    assert shown == sorted(shown, key=lambda line: int(line[6:-1]))  # in order
    assert rc[0].apply_sync(lambda: "still serving") == "still serving"


def test_px_in_ipython_shows_an_update_under_the_engine_s_header(rc, ip):
    rc.activate(suffix="upd")
    with capture_output(display=False) as io:  # the terminal's display publisher prints
        ip.run_cell_magic("pxupd", "--targets 0", _PROGRESS_CELL)
    # a terminal prints each display message's text as it comes, in order with the text
    lines = io.stdout.splitlines()
    assert lines == ["[output:0]", "'0%'", "[stdout:0] working", "[output:0]", "'100%'",
                     "[output:0]", "'old'", "[output:0]", "'final'"], io.stdout


def _iopub_of_cell(kc, code, timeout=60):
    """[(msg_type, content)] the kernel published for one cell, until it is idle."""
    msg_id, seen = kc.execute(code), []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return seen
        if msg["msg_type"] != "status":
            seen.append((msg["msg_type"], msg["content"]))


def test_a_jupyter_cell_updates_and_clears_engine_displays_in_place(cluster):
    jupyter_client = pytest.importorskip("jupyter_client")
    km, kc = jupyter_client.manager.start_new_kernel(
        kernel_name="python3", env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        conn = security_file(cluster.profile_dir, "client")
        _, errors = _run_in_kernel(kc, f"import taskhub\nrc = taskhub.Client({str(conn)!r})\n"
                                       f"rc.wait_for_engines(2, timeout=30)\nrc.activate()")
        assert errors == []
        seen = _iopub_of_cell(kc, "%%px --targets 0 --progress-after -1\n" + _PROGRESS_CELL)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert not [c for kind, c in seen if kind == "error"], seen
    shown = []
    for kind, content in seen:
        if kind in ("display_data", "update_display_data"):
            shown.append((kind, content["data"]["text/plain"],
                          content.get("transient", {}).get("display_id")))
        elif kind == "clear_output":
            shown.append((kind, content["wait"]))
        elif kind == "stream":
            shown += [("stream", line) for line in content["text"].splitlines()]
    # the notebook gets the engine's display_id (made the engine's own), so the update
    # replaces the "0%" output in place, and the clear_output clears the cell's output
    assert [s for s in shown if s[0] != "stream"] == [
        ("display_data", "'0%'", "progress@engine0"),
        ("update_display_data", "'100%'", "progress@engine0"),
        ("display_data", "'old'", None),
        ("clear_output", True),
        ("display_data", "'final'", None)], shown
    assert shown.index(("stream", "[stdout:0] working")) < \
        shown.index(("update_display_data", "'100%'", "progress@engine0"))


# -- what the magics take from the view, and Ctrl-C in a cell --------------------------------
def test_px_follows_the_view_s_block_and_targets_and_pxconfig_sets_them(rc, ip):
    view = rc[rc.ids[-1:]]
    view.activate(suffix="vw")
    view.block = False
    ar = ip.run_line_magic("pxvw", "v = 1")
    assert ar is not None and ar.get(timeout=30) is not None  # not blocking: the view's
    view.block = True
    assert ip.run_line_magic("pxvw", "v = 2") is None  # blocking now, read per cell
    ip.run_line_magic("pxconfigvw", "-t ::2 --noblock")
    assert (view.targets, view.block) == (rc.ids[::2], False)
    ip.run_line_magic("pxconfigvw", "-t -1 --block")
    assert (view.targets, view.block) == (rc.ids[-1], True)
    ip.user_ns["x"] = "client"
    view["x"] = "engine"
    ip.run_line_magic("pxvw", 'y = f"{x}"')  # the engines' code, not expanded here
    assert view["y"] == "engine"


@pytest.mark.parametrize("sig, ename", [("SIGINT", "KeyboardInterrupt"),
                                        ("SIGTERM", "TaskAborted")])
def test_ctrl_c_in_a_px_cell_does_what_signal_on_interrupt_says(rc, ip, tmp_path, sig, ename):
    import signal
    rc.activate(suffix="int")
    gate = tmp_path / "gate"  # never opened: only the interrupt ends the task

    def press_ctrl_c_once_running(stream, main):
        wait_until(lambda: "[stdout:0] waiting" in stream.getvalue(), timeout=30,
                   what="the cell's task to run")
        signal.pthread_kill(main, signal.SIGINT)  # what Ctrl-C does to IPython

    with capture_output() as io:
        presser = threading.Thread(target=press_ctrl_c_once_running,
                                   args=(sys.stdout, threading.get_ident()))
        presser.start()
        ip.run_cell_magic("pxint", f"--targets 0 --signal-on-interrupt {sig} -o res",
                          _gated(gate, "print('waiting', flush=True)", "print('after')"))
        presser.join()
    assert f"Received Keyboard Interrupt. Sending signal {sig} to engines..." in io.stderr
    with pytest.raises(RemoteError) as info:
        ip.user_ns["res"].get(timeout=30)  # the interrupted cell's task
    assert info.value.ename == ename and "after" not in io.stdout
    with capture_output() as io:  # the cluster goes on serving
        ip.run_line_magic("pxint", "print('still here')")
    assert io.stdout.count("still here") == len(rc.ids)


def test_signal_on_interrupt_names_a_signal():
    from taskhub.magics import interrupt_action
    assert [interrupt_action(s) for s in ("SIGINT", "2", "int", "0", "SIGKILL", "9")] == \
        ["interrupt", "interrupt", "interrupt", "none", "abort", "abort"]
    with pytest.raises(ValueError, match="--signal-on-interrupt takes a signal"):
        Options().parse("--signal-on-interrupt SIGNOPE")


# -- publish_data ---------------------------------------------------------------------------
def test_publish_data_reaches_ar_data_while_the_task_runs_and_stays_in_the_record(rc, tmp_path):
    gate = tmp_path / "gate"

    def train(gate):
        import os
        import time
        from taskhub.datapub import publish_data
        publish_data({"epoch": 0, "weights": [0.5]})
        for _ in range(6000):
            if os.path.exists(gate):
                break
            time.sleep(0.01)
        publish_data({"epoch": 1})
        return "trained"

    ar = rc[rc.ids[0]].apply(train, str(gate))
    wait_until(lambda: ar.data, timeout=30, what="the first publish_data on iopub")
    assert ar.data == {"epoch": 0, "weights": [0.5]} and not ar.done()
    gate.touch()
    assert ar.get(timeout=30) == "trained"
    assert ar.data == {"epoch": 1, "weights": [0.5]}  # each call updates the dict
    stored = rc.get_result(ar.msg_ids[0], owner=False)  # from the task DB
    assert stored.get(timeout=30) == "trained" and stored.data == ar.data

    def not_a_dict():
        from taskhub.datapub import publish_data
        publish_data([1])

    with pytest.raises(RemoteError) as info:
        rc[rc.ids[0]].apply_sync(not_a_dict)
    assert info.value.ename == "TypeError"
    from taskhub.datapub import publish_data
    with pytest.raises(RuntimeError, match="call it in a task on an engine"):
        publish_data({"here": "in the client"})


def test_load_ext_connects_on_first_use_and_pxconfig_reaches_the_real_view(rc, ip,
                                                                           monkeypatch):
    import taskhub.client
    from taskhub.magics import load_ipython_extension
    made = []
    monkeypatch.setattr(taskhub.client, "Client", lambda: made.append(rc) or rc)
    load_ipython_extension(ip)  # what %load_ext taskhub does
    assert made == []  # no connection until a magic needs one
    ip.run_line_magic("pxconfig", f"-t {rc.ids[0]} --noblock")
    assert len(made) == 1
    ar = ip.run_line_magic("px", "import os; os.getpid()")  # not blocking, on engine 0 only
    assert ar.get(timeout=30) is not None and len(ar.msg_ids) == 1
    ip.run_line_magic("pxconfig", "-t all --block")
    with capture_output() as io:
        ip.run_line_magic("px", "print('lazy')")
    assert io.stdout.count("lazy") == len(rc.ids) and len(made) == 1
