"""One long-lived event loop in a background thread, for the async openai clients.

Async clients belong to the loop that made them; keeping one loop for the life of the process lets them
(and their connection pools) be reused across evaluations, instead of a new loop, new clients and new
connections per call.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading


class LoopThread:
    """An event loop running in a daemon thread, started on first use (and again in a forked child)."""

    def __init__(self):
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._pid != os.getpid():
            with self._lock:
                if self._loop is None or self._pid != os.getpid():
                    loop = asyncio.new_event_loop()
                    self._thread = threading.Thread(target=loop.run_forever, name="engine-aio", daemon=True)
                    self._thread.start()
                    self._loop, self._pid = loop, os.getpid()
        return self._loop

    def close(self, cleanup=None) -> None:
        """Run `cleanup()` (a coroutine function) on the loop, then stop the loop and its thread."""
        with self._lock:
            loop, thread, self._loop = self._loop, self._thread, None
        if loop is None or self._pid != os.getpid():
            return
        if cleanup is not None:
            try:
                asyncio.run_coroutine_threadsafe(cleanup(), loop).result(timeout=10)
            except Exception:  # noqa: BLE001 - closing connections is best effort
                pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    def submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure())

    def run(self, coro, on_interrupt=None):
        """Run `coro` on the loop and wait.

        On Ctrl-C, `on_interrupt()` is called (it should stop new requests) and the requests in flight
        are waited for, so that what is paid for reaches the cache; a second Ctrl-C abandons them.
        """
        future = None
        try:
            future = self.submit(coro)
            return future.result()
        except KeyboardInterrupt:
            if future is None:
                coro.close()
                raise
            if on_interrupt is None:
                future.cancel()
                raise
            on_interrupt()
            try:
                future.result()
            except KeyboardInterrupt:
                future.cancel()
            raise
