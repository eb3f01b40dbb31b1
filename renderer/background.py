"""Work on a background thread behind a bounded queue, the one shape every pipeline stage uses
(decoders, the flow producer, the encoders): a bounded queue so memory stays flat, an end
marker, and an exception carried across to the other side instead of a silent dead thread."""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable

_END = object()


class Producer:
    """Runs `produce()` on a daemon thread, up to `depth` items ahead of the thread that
    iterates over it; an exception in `produce` is raised to the consumer where it happened."""

    def __init__(self, produce: Callable[[], Iterable], depth: int = 8, name: str | None = None):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(produce,), daemon=True, name=name)
        self.thread.start()

    def _run(self, produce) -> None:
        try:
            for item in produce():
                if self.stopping.is_set():
                    break
                self.queue.put(item)
        except BaseException as exc:
            self.error = exc
        finally:
            self.queue.put(_END)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.queue.get()
        if item is _END:
            self.queue.put(_END)  # later calls end too
            if self.error is not None:
                raise self.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop early: the thread finishes its current item and ends; nothing is left waiting."""
        self.stopping.set()
        while self.thread.is_alive():
            try:
                self.queue.get_nowait()
            except queue.Empty:
                self.thread.join(0.05)


class Consumer:
    """Hands items to `consume(item)` on a daemon thread through a queue of `depth`, so a slow
    consumer (an encoder) never stalls the caller until the queue is full. After a failure the
    rest is drained (the caller never blocks) and the error is raised at the next `put`."""

    def __init__(self, consume: Callable[[object], None], depth: int = 4,
                 name: str | None = None):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(consume,), daemon=True, name=name)
        self.thread.start()

    def _run(self, consume) -> None:
        try:
            while (item := self.queue.get()) is not _END:
                consume(item)
        except BaseException as exc:
            self.error = exc
            while self.queue.get() is not _END:
                pass

    def put(self, item) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def stop(self) -> None:
        """Let it finish what was put, and end (an error is kept, not raised)."""
        self.queue.put(_END)
        self.thread.join()

    def finish(self) -> None:
        """Like stop, then raise the first error, if any."""
        self.stop()
        if self.error is not None:
            raise self.error
