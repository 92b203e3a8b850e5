"""The bounded queue in front of every sink: a put never blocks, what does not fit is counted.

A broker or webhook outage must neither grow memory without end nor stall the bus reader. When the
queue is full the *new* item is refused and counted as overflow (the oldest queued items go out
first once the sink is back, in order); the sink's stats and metrics carry the count.
"""
import collections
import threading
from typing import Any, Deque, Dict, List, Optional


class SinkQueue:
    """FIFO of at most `size` items with counters: queued now, overflowed, delivered, failed."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self._items: Deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self.overflow = 0
        self.delivered = 0
        self.failed = 0
        self.accepted = 0

    def put(self, item: Any) -> bool:
        """Queue `item` unless full; False (and overflow +1) when it was refused."""
        with self._cond:
            if len(self._items) >= self.size:
                self.overflow += 1
                return False
            self._items.append(item)
            self.accepted += 1
            self._cond.notify()
            return True

    def get(self, timeout: float) -> Optional[Any]:
        """The oldest item, waiting up to `timeout` seconds; None when nothing came."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def peek(self) -> Optional[Any]:
        with self._cond:
            return self._items[0] if self._items else None

    def pop(self) -> Optional[Any]:
        with self._cond:
            return self._items.popleft() if self._items else None

    def drain(self) -> List[Any]:
        """Remove and return everything queued (at shutdown, to count what was left)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def count_delivered(self, n: int = 1) -> None:
        with self._cond:
            self.delivered += n

    def count_failed(self, n: int = 1) -> None:
        with self._cond:
            self.failed += n

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def snapshot(self) -> Dict[str, int]:
        with self._cond:
            return {"queued": len(self._items), "size": self.size, "accepted": self.accepted,
                    "delivered": self.delivered, "overflow": self.overflow, "failed": self.failed}
