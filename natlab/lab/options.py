"""Settings whose fields are command-line options: one table gives each its flag, type, default, help and rule.

A field declared with :func:`option` is a row of the table. :func:`option_table` reads the rows of a
dataclass (the pytest plugin declares its options from them), and :func:`check_fields`, called from
the dataclass's ``__post_init__``, turns text into the field's type and applies the rules, so a
value given on the command line and one given in Python are checked by the same code, and every
complaint has the same shape: ``--sla must be more than 0 and at most 3600 seconds, got 0.0``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """An option value the harness cannot run with; the message names the option and what is allowed."""


@dataclass(frozen=True)
class Rule:
    """A condition on one value, and the words that state it ("must be at least 0 seconds")."""

    holds: Callable[[Any], bool]
    allowed: str


@dataclass(frozen=True)
class Option:
    """One row of the table: a settings field and the command-line option ``flag`` that sets it."""

    name: str
    flag: str
    kind: type
    default: Any
    help: str
    rule: Rule | None = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    @property
    def is_switch(self) -> bool:
        """A bool option is a flag without a value (``--keep``)."""
        return self.kind is bool

    def parser_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``argparse``/``pytest.Parser.addoption``.

        Values stay text: the settings convert and check them, so both ways in read the same errors.
        """
        if self.is_switch:
            return {"dest": self.name, "action": "store_true", "default": False, "help": self.help}
        text = self.help if self.default is None else f"{self.help} (default: {self.default})"
        metavar = "{" + ",".join(self.choices) + "}" if self.choices else (self.metavar or self.name.upper())
        return {"dest": self.name, "default": self.default, "metavar": metavar, "help": text}

    def convert(self, value: Any) -> Any:
        """``value`` as this option's type (text from a command line is parsed), else SettingsError."""
        if value is None or (isinstance(value, self.kind) and not (self.kind is float and isinstance(value, bool))):
            return value
        try:
            if self.kind is float and isinstance(value, int | str) and not isinstance(value, bool):
                return float(value)
            if self.kind in (str, Path) and isinstance(value, str | Path):
                return self.kind(value)
        except ValueError:
            pass
        raise SettingsError(f"{self.flag} must be {_KIND_WORDS.get(self.kind, self.kind.__name__)}, got {value!r}")

    def check(self, value: Any) -> None:
        """SettingsError naming the option unless ``value`` is one of its choices and meets its rule."""
        if value is None:
            return
        if self.choices and value not in self.choices:
            raise SettingsError(f"{self.flag} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.rule is not None and not self.rule.holds(value):
            raise SettingsError(f"{self.flag} {self.rule.allowed}, got {value!r}")


_KIND_WORDS = {float: "a number", str: "text", Path: "a path", bool: "true or false"}


def option(
    default: Any,
    help: str,
    *,
    rule: Rule | None = None,
    choices: Sequence[str] = (),
    metavar: str | None = None,
) -> Any:
    """A dataclass field that is also the option ``--<field-name-with-dashes>``."""
    metadata = {"help": help, "rule": rule, "choices": tuple(choices), "metavar": metavar}
    return dataclasses.field(default=default, metadata=metadata)


def option_table(settings_class: type) -> list[Option]:
    """The rows of ``settings_class`` (a dataclass of :func:`option` fields), in declaration order."""
    hints = typing.get_type_hints(settings_class)
    return [
        Option(
            name=field.name,
            flag="--" + field.name.replace("_", "-"),
            kind=_value_type(hints[field.name]),
            default=field.default,
            help=field.metadata["help"],
            rule=field.metadata["rule"],
            choices=field.metadata["choices"],
            metavar=field.metadata["metavar"],
        )
        for field in dataclasses.fields(settings_class)
        if "help" in field.metadata
    ]


def check_fields(settings: Any) -> None:
    """Converts every option field of the (frozen) dataclass ``settings`` to its type and checks it."""
    for row in option_table(type(settings)):
        value = row.convert(getattr(settings, row.name))
        row.check(value)
        object.__setattr__(settings, row.name, value)


def _value_type(hint: Any) -> type:
    """``float`` for ``float``, ``str`` for ``str | None``: the type a value has when it is given."""
    if isinstance(hint, types.UnionType):
        (kind,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        return kind
    return hint
