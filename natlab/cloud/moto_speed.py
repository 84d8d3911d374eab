"""What serving moto costs, cut without changing any answer (process-wide, like the moto fixes).

moto's server finds the service of every request by listing moto's package folder on disk
(``moto.backends.list_of_moto_modules``: one listdir and ~200 isdir calls per request). The folder
does not change while a process runs, so the list is read once. Profiled (py-spy, the takeover lab's
file alone) it was ~8 % of the busy samples of the process serving moto.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from moto import backends

_original = backends.list_of_moto_modules


@functools.cache
def _modules_once() -> tuple[str, ...]:
    return tuple(_original())


def _listed_once() -> Iterable[str]:
    return _modules_once()


def apply() -> None:
    """Idempotent: moto's dispatcher looks the function up on ``moto.backends`` at every request."""
    backends.list_of_moto_modules = _listed_once
