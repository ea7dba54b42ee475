"""How a command ends when it is told to stop: SIGTERM / SIGHUP as a normal exit, so exit handlers run."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def exit_cleanly_on_terminate() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP are a normal exit (``SystemExit``), so exit handlers run: kaleido's
    closes the export browser and removes its temporary folders, which the default action (die at once) leaves in
    TMPDIR. A second signal kills at once, as before; signals the caller ignores (nohup) stay ignored."""

    def stop(signum, _frame):
        signal.signal(signum, signal.SIG_DFL)
        raise SystemExit(128 + signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) == signal.SIG_DFL:
                previous[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
