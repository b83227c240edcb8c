"""Code an engine runs through IPython, when IPython is installed there.

    view.execute("%whos")  ─▶ ops.execute ─▶ EngineShell.run_cell: magics, !shell, `_`,
                                             display() and rich reprs, as in a kernel
       display(x)          ─▶ DisplayCollector.publish ─▶ the running task's `outputs`,
       update_display(x)      and iopub as it is called (see capture.py, displays.py)
       clear_output()      ─▶ DisplayCollector.clear_output ─▶ the same way
       last expression     ─▶ ResultHook ─▶ the task's `execute_result` (silent=False)
                              both travel in the reply's metadata (ar.outputs,
                              ar.execute_result) and the call returns an ExecuteReply

The shell is made on the first execute, not when the engine starts: an engine that only
runs functions never imports IPython, so it starts and maps as fast as before. Its
namespace is the engine's `__main__`, the one push/pull/apply(@interactive) use. Without
IPython, execute() runs plain Python (no magics) as it always did.
"""
import sys

from .capture import current_output

_shell = None


def available():
    try:
        import IPython  # noqa: F401 - only asking whether it is there
    except ImportError:
        return False
    return True


def shell():
    """The engine's InteractiveShell, made on first use."""
    global _shell
    if _shell is None:
        _shell = _make_shell()
    return _shell


def _make_shell():
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    class ResultHook(DisplayHook):
        """Keeps the formatted value of a cell's last expression for the running task,
        instead of printing `Out[n]:` to the engine's stdout."""

        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            output = current_output()
            if output is not None:
                output.execute_result = {"data": format_dict, "metadata": md_dict or {},
                                         "execution_count": self.prompt_count}

    class DisplayCollector(DisplayPublisher):
        """display() in a task (execute or apply) is kept with that task's outputs."""

        def publish(self, data, metadata=None, source=None, *, transient=None,
                    update=False, **kwargs):
            output = current_output()
            if output is None:  # outside a task: the engine's log, as text
                sys.__stdout__.write(str(data.get("text/plain", data)) + "\n")
                return
            output.display(data, metadata, transient, update)

        def clear_output(self, wait=False):
            """clear_output() in a task: forwarded, as display() is (taskhub.displays)."""
            output = current_output()
            if output is not None:
                output.clear_output(wait)

    class EngineShell(InteractiveShell):
        """An InteractiveShell whose errors are the task's error, not printed text."""

        def showtraceback(self, *args, **kwargs):
            pass

        def showsyntaxerror(self, *args, **kwargs):
            pass

    main = sys.modules["__main__"]
    return EngineShell.instance(displayhook_class=ResultHook,
                                display_pub_class=DisplayCollector,
                                user_module=main, user_ns=main.__dict__)


def run_cell(code, silent=False):
    """Run `code` as a cell; its ExecuteReply. An error in the cell is raised."""
    from ..executereply import ExecuteReply
    sh = shell()
    result = sh.run_cell(code, store_history=not silent, silent=silent)
    error = result.error_before_exec or result.error_in_exec
    if error is not None:
        import traceback
        cell_tb = _from_the_cell(error.__traceback__)
        # the error the task reports shows the cell's frames, not this module's
        error.taskhub_traceback = "".join(traceback.format_exception(type(error), error,
                                                                     cell_tb))
        raise error
    output = current_output()
    if output is None:
        return ExecuteReply(result.execution_count)
    return ExecuteReply(result.execution_count, output.execute_result, list(output.outputs),
                        output.text("stdout"), output.text("stderr"))


def _from_the_cell(tb):
    """The traceback without IPython's own frames above the cell's code."""
    import IPython.core.interactiveshell as shell_module
    while tb is not None and tb.tb_frame.f_code.co_filename == shell_module.__file__:
        tb = tb.tb_next
    return tb
