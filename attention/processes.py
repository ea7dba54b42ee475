"""Child processes that never outlive their parent: a pool worker (``corpus run --workers N``) must not keep running,
holding ~650 MB of models, after its parent was killed with SIGKILL (no Python cleanup runs then)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_SECONDS = 0.5


def die_with_parent(parent_pid: int) -> None:
    """End this process as soon as ``parent_pid`` is gone: Linux's parent-death signal (SIGKILL, delivered by the
    kernel), else a daemon thread that polls the parent id. Call first thing in a child, with the parent's pid as
    the parent saw it (a parent that died before this call is caught by the check that follows)."""
    if sys.platform.startswith("linux") and _set_parent_death_signal(signal.SIGKILL):
        if os.getppid() != parent_pid:  # the parent died before the signal was armed
            os._exit(1)
        return
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="watch-parent", daemon=True).start()


def _set_parent_death_signal(signum: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)
