"""The base of everything the harness starts and must stop: servers, namespaces, processes, workdirs."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Resource:
    """A context manager over ``start()`` and ``close()``.

    ``with thing:`` starts it and always closes it; if ``start()`` fails half-way, ``close()`` still
    runs, so ``close()`` must cope with a partial start and with being called twice.
    """

    def start(self) -> Self:
        return self

    def close(self) -> None:
        """Releases whatever ``start()`` took."""

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
