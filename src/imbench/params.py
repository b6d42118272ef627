"""Declared parameters: the type, range and default of one setting, and the check they imply.

Training settings (:mod:`imbench.settings`) and method parameters (:mod:`imbench.methods.tables`)
are declared once as :class:`Param` objects; the configuration checks at planning time
(:mod:`imbench.config`) and the parts that use the values at run time read the same declaration.
A new setting or parameter is checked as soon as it is declared.

Rules common to every declaration:

- ``bool`` is never accepted where a number is expected, and text is never read as a number
  (``'64'`` is not ``64``; PyYAML reads ``1e-4`` without a dot as text, so write ``1.0e-4``);
- an ``int`` parameter takes whole numbers only (``2.5`` and ``2.0`` are refused);
- a ``float`` parameter takes ints and floats, must be finite, and is returned as ``float``;
- ``None`` (YAML ``null``) is accepted only where ``nullable`` says what it means;
- ``literals`` are further accepted values outside the type (``'paper'`` for LMF's α and β).

The module imports nothing heavy: it runs while Snakemake plans.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field

__all__ = ["Param", "ParamError", "show"]

TYPES = ("int", "float", "bool", "str", "floats", "dict")


class ParamError(ValueError):
    """A value that does not fit its declaration; the message says what was expected."""


def show(value: object, floats: bool = True) -> str:
    """A value as the user wrote it in YAML: ``null``, ``true``, ``'text'``, ``2.5``.

    Text that looks like a number gets a hint; ``floats`` says whether a fractional number would be
    accepted (else the hint asks for a whole number).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.strip()
        if _E_NOTATION.fullmatch(text):
            mantissa, exponent = re.split("[eE]", text)
            if floats:
                fix = f"write {mantissa}.0e{exponent}"
            elif float(text).is_integer():
                fix = f"write the whole number {float(text):.0f}"
            else:
                fix = "write a whole number"
            return f"{value!r} (text: YAML reads {text} as text; {fix})"
        if _NUMBER.fullmatch(text):
            return f"{value!r} (text: write the number without quotes)"
        return repr(value)
    return repr(value)


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_E_NOTATION = re.compile(r"[-+]?\d+[eE][-+]?\d+")


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Param:
    """One declared parameter.

    ``type``: ``int``, ``float``, ``bool``, ``str``, ``floats`` (a list of numbers) or ``dict``, or
    a tuple of them (any one fits). ``lo``/``hi`` bound numbers (each entry of a ``floats`` list),
    inclusive unless ``lo_open``/``hi_open``. ``choices`` lists the allowed values of a ``str``.
    ``size`` fixes the length of a ``floats`` list (``"classes"``: the task's number of classes,
    known only per task). ``by_kind`` refines the declaration per task kind (``multiclass``,
    ``binary``, ``multilabel``); the planning checks apply it for every task of the grid.
    """

    type: str | tuple[str, ...]
    default: object = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple | None = None
    nullable: bool = False
    literals: tuple = ()
    size: int | str | None = None
    by_kind: dict = field(default_factory=dict, hash=False, compare=False)
    doc: str = ""

    def __post_init__(self):
        for t in self.types:
            if t not in TYPES:
                raise ValueError(f"parameter type {t!r} is not one of {TYPES}")

    @property
    def types(self) -> tuple[str, ...]:
        return (self.type,) if isinstance(self.type, str) else tuple(self.type)

    # ------------------------------------------------------------------ description

    def _range(self) -> str:
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            return f" in {'(' if self.lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if self.hi_open else ']'}"
        if lo is not None:
            return f" {'>' if self.lo_open else '≥'} {_fmt(lo)}"
        if hi is not None:
            return f" {'<' if self.hi_open else '≤'} {_fmt(hi)}"
        return ""

    def expected(self, n_classes: int | None = None) -> str:
        """What the declaration accepts, in words: ``an integer ≥ 1``, ``a number > 0 or null``."""
        parts = []
        for t in self.types:
            if t == "int":
                parts.append("an integer" + self._range())
            elif t == "float":
                parts.append(("a number" if self._range() else "a finite number") + self._range())
            elif t == "bool":
                parts += ["true", "false"]
            elif t == "str":
                parts.append(
                    f"one of {', '.join(repr(c) for c in self.choices)}"
                    if self.choices
                    else "a string"
                )
            elif t == "floats":
                size = n_classes if self.size == "classes" else self.size
                count = f"{size} " if isinstance(size, int) else ""
                per = " (one per class)" if self.size == "classes" else ""
                parts.append(f"a list of {count}numbers{self._range()}{per}")
            elif t == "dict":
                parts.append("a mapping")
        parts += [show(v) for v in self.literals]
        if self.nullable:
            parts.append("null (the default)")
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]

    # ------------------------------------------------------------------ check

    def _in_range(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        if self.lo is not None and not (v > self.lo if self.lo_open else v >= self.lo):
            return False
        if self.hi is not None and not (v < self.hi if self.hi_open else v <= self.hi):
            return False
        return True

    @classmethod
    def _is_literal(cls, value, lit) -> bool:
        if isinstance(lit, str):
            return isinstance(value, str) and value == lit
        return cls._is_number(value) and cls._is_number(lit) and float(value) == float(lit)

    @staticmethod
    def _is_number(value) -> bool:
        return (
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and type(value).__name__ != "bool_"
        )

    def _fit(self, t: str, value, n_classes: int | None):
        """``(True, normalised value)`` when ``value`` fits type ``t`` and the range, else ``(False, None)``."""
        if t == "int":
            if (
                isinstance(value, numbers.Integral)
                and self._is_number(value)
                and self._in_range(float(value))
            ):
                return True, int(value)
        elif t == "float":
            if self._is_number(value) and self._in_range(float(value)):
                return True, float(value)
        elif t == "bool":
            if isinstance(value, bool) or type(value).__name__ == "bool_":
                return True, bool(value)
        elif t == "str":
            if isinstance(value, str) and (self.choices is None or value in self.choices):
                return True, value
        elif t == "floats":
            if (
                isinstance(value, (list, tuple))
                and value
                and all(self._is_number(v) and self._in_range(float(v)) for v in value)
            ):
                size = n_classes if self.size == "classes" else self.size
                if not isinstance(size, int) or len(value) == size:
                    return True, [float(v) for v in value]
        elif t == "dict":
            if isinstance(value, dict):
                return True, dict(value)
        return False, None

    def check(self, value, n_classes: int | None = None):
        """The value, normalised (``int`` → ``float`` for a float); ``ParamError`` when it does not fit.

        ``n_classes`` sizes a ``floats`` list declared with ``size="classes"``; without it the length
        is not checked.
        """
        if value is None and self.nullable:
            return None
        if any(self._is_literal(value, lit) for lit in self.literals):
            return value
        for t in self.types:
            ok, out = self._fit(t, value, n_classes)
            if ok:
                return out
        floats = any(t in ("float", "floats") for t in self.types)
        raise ParamError(f"expected {self.expected(n_classes)}, got {show(value, floats)}")

    def for_kind(self, kind: str) -> Param:
        """The declaration that applies to a task of ``kind`` (``by_kind`` refinement, else itself)."""
        return self.by_kind.get(kind, self)
