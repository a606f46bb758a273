"""Value checkers shared by every settings schema of actlab (training settings, spec keys).

A *checker* is a callable ``check(value) -> normalised value`` that raises :class:`Invalid` with a
short description of what is allowed (``"an integer >= 1"``); its ``expected`` attribute holds the
same description, so one object both validates a setting and documents it (the README's spec
reference and the one-line errors come from the same text). Checkers never know the key they
check: the caller names it (``TrainConfig.lr``, ``study.toml: lr``, ``--set lr=...``).

    >>> Int(1)(3)
    3
    >>> Choice("sgd", "adam")("Adam")
    'adam'
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "Invalid", "Checker", "Int", "Float", "Choice", "Bool", "Text", "Name", "OptionalName",
    "Milestones", "Device", "Optional", "did_you_mean",
]


class Invalid(ValueError):
    """A value a checker refuses. ``expected`` says what is allowed; ``type_error`` is True when
    the value has the wrong type (``TrainConfig`` raises ``TypeError`` then)."""

    def __init__(self, expected: str, *, type_error: bool = False) -> None:
        super().__init__(expected)
        self.expected = expected
        self.type_error = type_error


Checker = Callable[[Any], Any]


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``options``, or ``""``."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Int:
    """An integer (bools refused) in ``[lo, hi]`` (either bound optional)."""

    def __init__(self, lo: int | None = None, hi: int | None = None) -> None:
        self.lo, self.hi = lo, hi
        if lo is not None and hi is not None:
            self.expected = f"an integer in [{lo}, {hi}]"
        elif lo is not None:
            self.expected = f"an integer >= {lo}"
        else:
            self.expected = "an integer" if hi is None else f"an integer <= {hi}"

    def __call__(self, v: Any) -> int:
        if not _is_int(v):
            raise Invalid(self.expected, type_error=True)
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            raise Invalid(self.expected)
        return v


class Float:
    """A finite number (int or float, returned as float) within optional bounds."""

    def __init__(self, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False) -> None:
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        if lo is not None and hi is not None:
            what = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        elif lo is not None:
            what = f"a number {'>' if lo_open else '>='} {lo:g}"
        elif hi is not None:
            what = f"a number {'<' if hi_open else '<='} {hi:g}"
        else:
            what = "a finite number"
        self.expected = what

    def __call__(self, v: Any) -> float:
        if not _is_number(v):
            raise Invalid(self.expected, type_error=not isinstance(v, (int, float)))
        v = float(v)
        lo, hi = self.lo, self.hi
        if lo is not None and (v < lo or (self.lo_open and v == lo)):
            raise Invalid(self.expected)
        if hi is not None and (v > hi or (self.hi_open and v == hi)):
            raise Invalid(self.expected)
        return v


class Choice:
    """One of a fixed set of lower-case words (matched case-insensitively)."""

    def __init__(self, *options: str) -> None:
        self.options = options
        self.expected = "one of " + ", ".join(repr(o) for o in options)

    def __call__(self, v: Any) -> str:
        if not isinstance(v, str) or v.lower() not in self.options:
            raise Invalid(self.expected, type_error=not isinstance(v, str))
        return v.lower()


class _Bool:
    expected = "true or false"

    def __call__(self, v: Any) -> bool:
        if not isinstance(v, bool):
            raise Invalid(self.expected, type_error=True)
        return v


class Text:
    """A string; ``nonempty`` refuses blank ones."""

    def __init__(self, nonempty: bool = False) -> None:
        self.nonempty = nonempty
        self.expected = "a non-empty string" if nonempty else "a string"

    def __call__(self, v: Any) -> str:
        if not isinstance(v, str):
            raise Invalid(self.expected, type_error=True)
        if self.nonempty and not v.strip():
            raise Invalid(self.expected)
        return v


class OptionalName:
    """A string where ``""`` or ``"none"`` (any case) mean None; None itself is accepted."""

    expected = 'a string ("none" for none)'

    def __call__(self, v: Any) -> str | None:
        if v is None:
            return None
        if not isinstance(v, str):
            raise Invalid(self.expected, type_error=True)
        return None if v.strip().lower() in ("", "none") else v


class Optional:
    """None, or a value ``inner`` accepts (TOML has no null: specs leave the key out)."""

    def __init__(self, inner: Checker) -> None:
        self.inner = inner
        self.expected = f"none or {getattr(inner, 'expected', 'a value')}"

    def __call__(self, v: Any) -> Any:
        if v is None:
            return None
        try:
            return self.inner(v)
        except Invalid as bad:
            raise Invalid(self.expected, type_error=bad.type_error) from None


class _Milestones:
    """A period in epochs (int >= 1) or a strictly increasing list of milestone epochs."""

    expected = "an integer >= 1 or a strictly increasing list of milestone epochs"

    def __call__(self, v: Any) -> int | list[int]:
        if _is_int(v):
            if v < 1:
                raise Invalid(self.expected)
            return v
        if not isinstance(v, (list, tuple)) or not v or not all(_is_int(m) for m in v):
            raise Invalid(self.expected, type_error=True)
        if any(m < 1 for m in v) or any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise Invalid(self.expected)
        return list(v)


class _Device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (spelling only; whether the device exists
    on this machine is :func:`actlab.train.config.device_problem`'s question)."""

    expected = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"

    def __call__(self, v: Any) -> str:
        if not isinstance(v, str):
            raise Invalid(self.expected, type_error=True)
        if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise Invalid(self.expected)


class Name(Text):
    """A registry name: non-empty, returned in registry spelling (lower case, ``-`` -> ``_``)."""

    def __init__(self) -> None:
        super().__init__(nonempty=True)

    def __call__(self, v: Any) -> str:
        return super().__call__(v).strip().lower().replace("-", "_")


Bool = _Bool()
Milestones = _Milestones()
Device = _Device()
