"""The error of the lab's Terraform steps: a failed command, no CLI, an aws provider that would not start.

A module of its own: :mod:`natlab.lab.provider_process` raises it too, and taking it from
:mod:`natlab.lab.terraform` (which starts that process) would be an import cycle.
"""

from __future__ import annotations


class TerraformError(RuntimeError):
    """A Terraform command failed; ``transcript`` holds what a person needs to see."""

    def __init__(self, message: str, transcript: str = "") -> None:
        super().__init__(message)
        self.transcript = transcript
