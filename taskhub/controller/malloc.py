"""Giving the memory glibc's malloc keeps back to the system, for the controller process.

The controller passes through streams of big message frames (task results of 100 KB and
more) among small long-lived objects. glibc serves frames below its mmap threshold (128 KB,
raised at run time as big blocks are freed) from its heaps, and a heap shrinks only from
its top: once the frames are freed, most of the memory they used stays in the process,
free but not returned (measured: 226 MB after 20,000 tasks × 100 KB, with far less in
flight at any time). `release()` (malloc_trim) hands back the free pages inside the heaps;
the controller's loop calls it when it goes idle after taking in many bytes.

Tuning mallopt instead was measured and left out: a 64 KB mmap threshold (every big frame
its own mapping) returns memory at once, but made that workload about 45% slower (23-24 s
against 15-17 s for 20,000 tasks: a mapping, page faults and an unmapping per frame); a lower trim threshold and fewer arenas changed
nothing measurable once idle trimming was in.
"""
import ctypes
import os
import sys

_libc = None


def glibc():
    """The process's C library if it is glibc (it has malloc_trim), else None."""
    global _libc
    if _libc is None:
        _libc = False
        try:
            version = os.confstr("CS_GNU_LIBC_VERSION")
        except (AttributeError, ValueError, OSError):
            version = None
        if version and sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None)  # the symbols already loaded: libc's among them
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                libc.malloc_trim.restype = ctypes.c_int
                _libc = libc
            except (OSError, AttributeError):
                pass
    return _libc or None


def release():
    """Give the free memory of malloc's heaps back to the system; whether any was given.
    False where the C library is not glibc. It walks every free block (a few milliseconds
    for 100 MB of heap), and the pages given back fault in again when next used: call it
    when idle, not per message."""
    libc = glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
