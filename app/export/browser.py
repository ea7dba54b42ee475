"""The Chromium that draws exported figures: one per process, kept open, two tabs, reloaded where the bytes need
it (before and after an SVG), never while a caller waits for a PNG or a PDF.

kaleido's own sync server renders in one tab and reloads that tab (plotly.js parsed again, ~0.2 s of a core) before
it hands the figure back, so every export waited for a reload; and its queue pairs answers with callers by order,
so two threads exporting at once could each receive the other's figure. :class:`ExportBrowser` runs kaleido's
async API on an event loop of its own thread: a caller waits for its own future only, and a tab is reloaded in the
background while the other tab draws the next figure (see :func:`_kaleido_class` for when).

One browser per process, like kaleido's own server (:data:`PROCESS_BROWSER`); a forked child starts its own on
first use (the parent's thread and browser stayed in the parent); it closes at exit.
"""

from __future__ import annotations

# Lazy imports (kaleido): Chromium-backed, loaded when the browser starts.
import asyncio
import atexit
import contextlib
import contextvars
import os
import threading
from concurrent.futures import Future

TABS = 2  # one draws while the other reloads
RENDER_TIMEOUT = 90.0  # seconds: kaleido's own default
RELOAD_EVERY = 25  # PNG / PDF figures a tab draws between reloads
WARM_UP_FIGURE = {  # the trace types the views draw, drawn once per tab as PDF (its first print costs most)
    "data": [{"type": "scatter", "x": [0, 1], "y": [0, 1]}, {"type": "heatmap", "z": [[0, 1]], "xaxis": "x2"},
             {"type": "sankey", "node": {"label": ["a", "b"]}, "link": {"source": [0], "target": [1], "value": [1]}}],
    "layout": {"width": 200, "height": 100, "xaxis2": {"domain": [0.5, 1]}, "title": {"text": "warm-up"},
               "font": {"family": "Helvetica, Arial, sans-serif"}},  # the publication theme's fonts
}  # fmt: skip


def _kaleido_class():
    """A kaleido ``Kaleido`` whose tabs are reloaded only where the bytes need it, never while a caller waits.

    A page that drew before writes the next SVG's attributes in another order, and an SVG must be the same bytes
    whenever it is made (``tests/corpus/test_corpus_export.py``): an SVG is drawn by a fresh page (a used tab is
    reloaded first) and its tab is reloaded in the background afterwards. PNG and PDF bytes do not depend on what
    the page drew before (PNG identical, PDF identical but for its creation date:
    ``tests/dashboard/test_export.py::test_png_and_pdf_bytes_do_not_depend_on_what_the_tab_drew_before``), so their
    tab goes back at once, reloaded in the background only every :data:`RELOAD_EVERY` figures (kaleido's page purges
    each figure; the reload bounds whatever a long-lived page could keep)."""
    import kaleido

    drawing = contextvars.ContextVar("drawing", default=None)  # the format the current render task draws

    class Kaleido(kaleido.Kaleido):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._uses: dict[int, int] = {}  # PNG / PDF figures each tab drew since its last reload, by id(tab)

        async def _render_task(self, fig_arg, **kwargs):
            drawing.set((fig_arg.get("opts") or {}).get("format"))  # this task's own context
            return await super()._render_task(fig_arg, **kwargs)

        async def _get_kaleido_tab(self):
            tab = await super()._get_kaleido_tab()
            if drawing.get() == "svg" and self._uses.get(id(tab), 0):
                await self._reload_or_put_back(tab)
            return tab

        async def _reload_or_put_back(self, tab) -> None:
            """Reload a used tab (within the render timeout); one that fails goes back to the queue still marked
            used (reloaded before its next SVG) and the error goes to the caller: a tab is never lost."""
            try:
                await asyncio.wait_for(tab.reload(), RENDER_TIMEOUT)
            except BaseException:
                await self.tabs_ready.put(tab)
                raise
            self._uses.pop(id(tab), None)

        async def _return_kaleido_tab(self, tab) -> None:
            uses = self._uses
            if drawing.get() != "svg":
                uses[id(tab)] = uses.get(id(tab), 0) + 1
                if uses[id(tab)] < RELOAD_EVERY:
                    await self.tabs_ready.put(tab)
                    return
            uses.pop(id(tab), None)
            reload = asyncio.get_running_loop().create_task(super()._return_kaleido_tab(tab))
            self._main_render_coroutines.add(reload)  # awaited (or cancelled) when the browser closes
            reload.add_done_callback(self._main_render_coroutines.discard)

        async def refresh(self) -> None:
            """Reload every tab that has drawn (after the warm-up: the first SVG then waits for no reload)."""
            for _ in range(self.tabs_ready.qsize()):
                tab = await self.tabs_ready.get()
                if self._uses.get(id(tab), 0):
                    await self._reload_or_put_back(tab)  # a failure: the tab stays queued and marked used
                await self.tabs_ready.put(tab)

    return Kaleido


class ExportBrowser:
    """A kaleido browser on its own thread and event loop; :meth:`render` is safe from any thread."""

    def __init__(self, tabs: int = TABS) -> None:
        self._tabs = tabs
        self._lock = threading.Lock()
        self._reset()
        os.register_at_fork(after_in_child=self._forget_parents)

    def _forget_parents(self) -> None:
        """In a forked child: the parent's browser, thread and loop stayed in the parent (and a lock another thread
        held at the fork would stay held): start afresh on first use."""
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kaleido = None
        self._closed: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @property
    def running(self) -> bool:
        return self._kaleido is not None and self._pid == os.getpid()

    def start(self) -> None:
        """Open the browser (once; later calls return at once). Raises what kaleido raises if Chromium cannot
        start (e.g. ``ChromeNotFoundError``)."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's thread and browser are not here
                self._reset()
            if self._kaleido is not None:
                return
            # registered before the browser starts: a process told to exit while its browser is still starting
            # (the warm-up at serve time) waits for this lock, then closes it, before Python removes the browser's
            # temporary profile (else "Directory not empty" at exit, and a Chromium left running)
            atexit.unregister(self.stop)
            atexit.register(self.stop)
            opened: Future = Future()
            self._thread = threading.Thread(target=self._serve, args=(opened,), name="export-browser", daemon=True)
            self._thread.start()
            opened.result()
            # and again now: atexit runs last-registered first, and the browser's temporary profile registered
            # weakref's exit hook while it started (when nothing in the process had before)
            atexit.unregister(self.stop)
            atexit.register(self.stop)

    def _serve(self, opened: Future) -> None:
        asyncio.run(self._main(opened))

    async def _main(self, opened: Future) -> None:
        try:
            kaleido = _kaleido_class()(n=self._tabs, timeout=RENDER_TIMEOUT)
            await kaleido.__aenter__()
        except BaseException as error:  # handed to the thread that asked
            opened.set_exception(error)
            return
        self._loop, self._closed = asyncio.get_running_loop(), asyncio.Event()
        with contextlib.suppress(Exception):  # each tab's first figure costs ~1 s (plotly.js compiled): pay it now
            await asyncio.gather(*(kaleido.calc_fig(WARM_UP_FIGURE, opts={"format": "pdf"}) for _ in range(self._tabs)))
            await kaleido.refresh()
        self._kaleido = kaleido
        opened.set_result(None)
        await self._closed.wait()
        await kaleido.__aexit__(None, None, None)

    def render(self, fig, opts: dict) -> bytes:
        """``fig`` (a figure or its dict) drawn by Chromium: PNG / SVG / PDF bytes per ``opts`` (kaleido's
        ``format``, ``width``, ``height``, ``scale``). Starts the browser if it is not running."""
        self.start()
        return asyncio.run_coroutine_threadsafe(self._kaleido.calc_fig(fig, opts=opts), self._loop).result()

    def stop(self) -> None:
        """Close the browser and remove kaleido's temporary folders (nothing if it is not running here)."""
        with self._lock:
            if not self.running:
                return
            self._loop.call_soon_threadsafe(self._closed.set)
            self._thread.join(timeout=30)
            self._reset()


PROCESS_BROWSER = ExportBrowser()  # this process's browser (see the module docstring)
