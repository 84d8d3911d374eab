"""The one way the harness builds boto3 clients, for every emulator and for real AWS."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from natlab.cloud.read_cache import ReadCache
from natlab.cloud.serial_wsgi import changes_at

#: The fake credential pair every emulator (moto, LocalStack) is called with.
EMULATOR_CREDENTIALS: dict[str, str] = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}

#: botocore's config unless the caller overrides a key (a few retries: emulators answer at once).
DEFAULT_CONFIG: dict[str, Any] = {"retries": {"mode": "standard", "max_attempts": 3}}


def aws_client(
    service: str,
    *,
    endpoint_url: str | None,
    region: str,
    profile: str | None = None,
    **config: Any,
) -> Any:
    """A boto3 client for ``service`` at ``endpoint_url`` (an emulator) or real AWS (None).

    An emulator gets :data:`EMULATOR_CREDENTIALS`; real AWS the user's own credential chain (or
    ``profile``). ``config`` is passed to botocore's ``Config`` over :data:`DEFAULT_CONFIG`. Each
    call makes its own session, so clients can be built from any thread. A client of the emulator
    this process serves answers repeated reads from memory while moto is unchanged (read_cache.py).
    """
    credentials = EMULATOR_CREDENTIALS if endpoint_url is not None else {}
    session = boto3.session.Session(region_name=region, profile_name=profile, **credentials)
    client = session.client(service, endpoint_url=endpoint_url, config=Config(**(DEFAULT_CONFIG | config)))
    changes = changes_at(endpoint_url)
    if changes is not None:
        ReadCache(changes).install(client)
    return client
