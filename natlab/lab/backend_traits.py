"""What a lab adapts to its backend: an emulator on this machine, one without TLS, moto's own AMI."""

from __future__ import annotations

from urllib.parse import urlparse

from natlab.cloud.backend import MOTO_AL2023_ARM64_AMI, Backend, MotoBackend


def loopback_port(endpoint_url: str | None) -> int | None:
    """The port of an emulator on this machine's loopback (instances reach it through a relay)."""
    if not endpoint_url:
        return None
    parsed = urlparse(endpoint_url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        return None
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def plain_http(endpoint_url: str | None) -> bool:
    """An emulator without TLS (where Terraform can share one provider process, see
    :class:`~natlab.lab.terraform.TerraformWorkdir`)."""
    return endpoint_url is not None and urlparse(endpoint_url).scheme == "http"


def ami_vars(backend: Backend) -> dict[str, str]:
    """On moto, its own AL2023 image; elsewhere the module looks the latest one up."""
    return {"ami_id": MOTO_AL2023_ARM64_AMI} if isinstance(backend, MotoBackend) else {}
