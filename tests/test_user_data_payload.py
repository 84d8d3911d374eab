"""What the launch template carries fits EC2's 16 KB, still runs, and expands as cloud-init expands it."""

from __future__ import annotations

import subprocess

import pytest
from userdata_cases import cases

from natlab.module.user_data_payload import (
    USER_DATA_LIMIT,
    as_cloud_init_reads,
    payload,
    strip_comments,
)
from natlab.module.userdata import BOOT_SCRIPT_PATH, render

RENDERINGS = [(name, zone) for name, zones in cases().items() for zone in zones]


@pytest.mark.parametrize(("case", "config"), RENDERINGS, ids=[f"{c}-{z['zone']}" for c, z in RENDERINGS])
def test_every_rendering_fits_ec2s_user_data_limit(case: str, config: dict) -> None:
    size = len(payload(render(**config)))
    assert size <= USER_DATA_LIMIT, f"{case}: {size} bytes compressed, over EC2's {USER_DATA_LIMIT}"


def test_the_commented_rendering_alone_would_not_fit() -> None:
    # Why the module compresses at all: the rendering as written is several times the limit.
    assert len(render(**RENDERINGS[-1][1]).encode()) > 3 * USER_DATA_LIMIT


def test_comment_lines_go_and_everything_else_stays() -> None:
    text = "#!/usr/bin/env bash\n# a comment\n  # indented\n#\necho '# not a comment'\nx=1 # trailing\n"
    assert strip_comments(text) == "#!/usr/bin/env bash\necho '# not a comment'\nx=1 # trailing\n"


def test_the_stripped_boot_script_is_still_valid_bash_with_both_shebangs_kept() -> None:
    rendering = strip_comments(render(**RENDERINGS[-1][1]))
    assert rendering.count("#!/usr/bin/env bash\n") == 2  # persist_script finds the script by the last one
    checked = subprocess.run(["bash", "-n"], input=rendering, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert len(strip_comments(BOOT_SCRIPT_PATH.read_text())) < len(BOOT_SCRIPT_PATH.read_text())


def test_cloud_init_reads_the_compressed_payload_back_and_plain_data_as_is() -> None:
    text = render(**RENDERINGS[0][1])
    assert as_cloud_init_reads(payload(text)).decode() == strip_comments(text)
    assert as_cloud_init_reads(b"#!/bin/sh\necho plain\n") == b"#!/bin/sh\necho plain\n"
