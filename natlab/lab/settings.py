"""The harness's options, checked once at start-up so bad input fails before anything is created."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class SettingsError(ValueError):
    """An option value the harness cannot run with; the message names the option and what is allowed."""


@dataclass(frozen=True)
class HarnessSettings:
    backend: str = "moto"
    endpoint_url: str | None = None
    region: str | None = None
    aws_confirm_costs: bool = False
    sla: float = 180.0
    boot_delay: float = 0.0
    report_dir: Path = Path("reports")
    keep: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.sla <= 3600:
            raise SettingsError(f"--sla must be more than 0 and at most 3600 seconds, got {self.sla}")
        if not 0 <= self.boot_delay < self.sla:
            raise SettingsError(
                f"--boot-delay must be at least 0 and below --sla ({self.sla} s), got {self.boot_delay}"
            )
        if self.endpoint_url is not None:
            parsed = urlparse(self.endpoint_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise SettingsError(
                    f"--endpoint-url must be an http(s) URL such as http://127.0.0.1:4566, got {self.endpoint_url!r}"
                )
        if self.backend == "localstack" and self.endpoint_url is None:
            raise SettingsError("--backend localstack needs --endpoint-url (e.g. http://127.0.0.1:4566)")
        if self.backend == "moto" and self.endpoint_url is not None:
            raise SettingsError("--endpoint-url is for --backend localstack; moto is started by the harness")
        if self.backend == "aws":
            if not self.aws_confirm_costs:
                raise SettingsError("--backend aws launches real, billed instances: add --aws-confirm-costs to confirm")
            if not self.region:
                raise SettingsError("--backend aws needs --region (e.g. --region eu-west-1)")

    @classmethod
    def from_options(cls, config: Any) -> HarnessSettings:
        """Builds settings from pytest's config (only the harness's own options)."""
        option = config.getoption
        return cls(
            backend=option("--backend", default="moto"),
            endpoint_url=option("--endpoint-url", default=None),
            region=option("--region", default=None),
            aws_confirm_costs=option("--aws-confirm-costs", default=False),
            sla=option("--sla", default=180.0),
            boot_delay=option("--boot-delay", default=0.0),
            report_dir=option("--report-dir", default=Path("reports")),
            keep=option("--keep", default=False),
        )
