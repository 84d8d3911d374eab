"""What serving moto costs, cut without changing any answer the harness gets (process-wide, like the moto fixes).

- moto's server finds the service of every request by listing moto's package folder on disk
  (``moto.backends.list_of_moto_modules``: one listdir and ~200 isdir calls per request). The folder
  does not change while a process runs, so the list is read once. Profiled (py-spy, the takeover
  lab's file alone) it was ~8 % of the busy samples of the process serving moto.
- Every EC2 backend moto makes (each region, again at every reset: the unit tests reset before each
  test) loads its image catalogue, 1,227 of whose ~1,300 images per region are ECS-optimized AMIs
  that nothing here looks for. They are left out; moto's other images (its defaults and the
  region's latest Amazon Linux, which the labs boot) stay. Profiled over the harness's unit-level
  files, the resets were 13 % of the Python time, nearly all of it building those images.
"""

from __future__ import annotations

import functools
from typing import Any

from moto import backends
from moto.ec2.models import amis

_original = backends.list_of_moto_modules
_load_resource = amis.load_resource
#: The part of moto's image catalogue left out (see the module docstring).
SKIPPED_IMAGES = "ec2/resources/ecs/optimized_amis/"


@functools.cache
def _listed_once() -> tuple[str, ...]:
    return tuple(_original())


def _images_without_ecs(path: str) -> Any:
    return [] if path.startswith(SKIPPED_IMAGES) else _load_resource(path)


def apply() -> None:
    """Idempotent: moto looks both functions up on their modules at every call."""
    backends.list_of_moto_modules = _listed_once
    amis.load_resource = _images_without_ecs
