"""The harness's settings: the one table of its options, checked once so bad input fails before anything starts.

Each field below is a command-line option of ``pytest harness`` (``boot_delay`` is ``--boot-delay``):
its default, type, help and rule are written here and nowhere else. Scripts build the same settings
in Python (``HarnessSettings(boot_delay=30)``) and get the same checks and messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from natlab.cloud.image import DEFAULT_PROFILE, IMAGE_PROFILES
from natlab.lab.options import Option, Rule, SettingsError, check_fields, option, option_table

__all__ = ["BACKENDS", "OPTION_GROUP", "HarnessSettings", "SettingsError"]

BACKENDS = ("moto", "localstack", "aws")
#: The pytest option group the table is declared in: ``pytest --help`` lists it under this title.
OPTION_GROUP = ("natlab", "NAT failover harness")
MAX_SLA_SECONDS = 3600.0


def _is_http_url(value: str) -> bool:
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


@dataclass(frozen=True)
class HarnessSettings:
    """Where AWS lives, what the failover must achieve, and where the reports go."""

    backend: str = option(
        "moto",
        "where AWS lives: the embedded moto server, a LocalStack edge, or real AWS",
        choices=BACKENDS,
    )
    endpoint_url: str | None = option(
        None,
        "the LocalStack-compatible edge for --backend localstack (e.g. http://127.0.0.1:4566)",
        rule=Rule(_is_http_url, "must be an http(s) URL such as http://127.0.0.1:4566"),
        metavar="URL",
    )
    region: str | None = option(None, "AWS region (us-east-1 when not given; required with --backend aws)")
    aws_confirm_costs: bool = option(
        False, "with --backend aws: yes, launch real instances in my account and pay for them"
    )
    sla: float = option(
        180.0,
        "seconds from NAT failure to routes on the replacement",
        rule=Rule(lambda s: 0 < s <= MAX_SLA_SECONDS, f"must be more than 0 and at most {MAX_SLA_SECONDS:.0f} seconds"),
        metavar="SECONDS",
    )
    boot_delay: float = option(
        0.0,
        "modelled seconds from instance launch to user data start (real AWS: ~26-29 s)",
        rule=Rule(lambda s: s >= 0, "must be at least 0 seconds"),
        metavar="SECONDS",
    )
    image: str = option(
        DEFAULT_PROFILE,
        "what the NAT instances' image has: al2023 (standard AMI, no nftables: the boot installs it with "
        "a modelled dnf) or baked (al2023 + nftables, packer/al2023-nat.pkr.hcl)",
        choices=IMAGE_PROFILES,
    )
    report_dir: Path = option(  # noqa: RUF009 - option() is a dataclasses.field; the Path is never mutated
        Path("reports"), "where failover timelines (table, SVG/HTML, JSON) are written", metavar="DIR"
    )
    keep: bool = option(False, "leave the lab up after the run for debugging, and print how to reach it")

    def __post_init__(self) -> None:
        check_fields(self)
        self._check_combination()

    def _check_combination(self) -> None:
        """The rules across options (each field alone has passed its own)."""
        if self.boot_delay >= self.sla:
            raise SettingsError(f"--boot-delay must be below --sla ({self.sla} s), got {self.boot_delay}")
        if self.backend == "localstack" and self.endpoint_url is None:
            raise SettingsError("--backend localstack needs --endpoint-url (e.g. http://127.0.0.1:4566)")
        if self.backend != "localstack" and self.endpoint_url is not None:
            raise SettingsError(
                f"--endpoint-url is for --backend localstack only, got it with --backend {self.backend}"
            )
        if self.backend == "aws" and not self.aws_confirm_costs:
            raise SettingsError("--backend aws launches real, billed instances: add --aws-confirm-costs to confirm")
        if self.backend == "aws" and not self.region:
            raise SettingsError("--backend aws needs --region (e.g. --region eu-west-1)")

    @classmethod
    def options(cls) -> list[Option]:
        """The table: one row per option, in the order ``--help`` shows them."""
        return option_table(cls)

    @classmethod
    def from_options(cls, config: Any) -> HarnessSettings:
        """Settings from pytest's config (or anything with ``getoption``); unset options keep their default."""
        return cls(**{row.name: config.getoption(row.name, default=row.default) for row in cls.options()})
