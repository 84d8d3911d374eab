"""What a launch template carries: the rendered user data without comment lines, gzip-compressed.

EC2 takes at most 16 KB of user data, counted before base64 (EC2 user guide, "Work with instance
user data"); the commented boot script alone is several times that. The module sends the rendering
without its comment lines (the repository keeps them), gzip-compressed, which cloud-init
recognises and expands before it runs the script. The same rule is written once in HCL (main.tf,
``local.user_data_text``) and once here; the parity test holds them equal.
"""

from __future__ import annotations

import gzip
import re

#: A whole-line comment (indented or not), but never a ``#!`` line: the script finds itself by its shebang.
COMMENT_LINE = re.compile(r"(?m)^[ \t]*#([^!\n].*)?\n")
#: EC2's limit on user data, in bytes before base64.
USER_DATA_LIMIT = 16 * 1024
GZIP_MAGIC = b"\x1f\x8b"


def strip_comments(text: str) -> str:
    """The rendering as the instance receives it: every whole-line comment dropped."""
    return COMMENT_LINE.sub("", text)


def payload(text: str) -> bytes:
    """The bytes the launch template carries for ``text`` (a rendering), as Terraform's base64gzip makes them."""
    return gzip.compress(strip_comments(text).encode(), mtime=0)


def as_cloud_init_reads(raw: bytes) -> bytes:
    """User data as cloud-init runs it: gzip-compressed data expanded, anything else as it is."""
    return gzip.decompress(raw) if raw.startswith(GZIP_MAGIC) else raw
