"""The base of everything the harness starts and must stop: servers, namespaces, processes, workdirs."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Resource:
    """A context manager over ``start()`` and ``close()``, which subclasses override.

    ``with thing:`` starts it and always closes it; if ``start()`` fails half-way, ``close()`` still
    runs, so ``close()`` must cope with a partial start and with being called twice. Outside a
    ``with``, ``open()`` starts it the same way (closing what was made if the start fails).
    """

    def start(self) -> Self:
        return self

    def close(self) -> None:
        """Releases whatever ``start()`` took."""

    def open(self) -> Self:
        """``start()``; if it fails half-way, ``close()`` and re-raise."""
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
