"""HCL values as python-hcl2 returns them, shown as a reader would write them."""

from __future__ import annotations

import json
from typing import Any


def unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted ('"text"'); HCL's escapes match JSON's for ours."""
    if isinstance(value, str) and len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return json.loads(value)
    return value


def hcl_value(value: Any) -> str:
    """A default as a reader would write it in HCL."""
    value = unquote(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(hcl_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = {key: item for key, item in value.items() if key != "__is_block__"}
        return "{" + ", ".join(f"{unquote(key)} = {hcl_value(item)}" for key, item in items.items()) + "}"
    raise TypeError(f"cannot render default {value!r}")
