"""Argument checks shared by every constructor and method of the package, on both backends.

The rule: a wrong type is a ``TypeError``, a wrong value a ``ValueError``; both messages start
with the argument's name and give the value (``"max_workers: must be at least 1, got 0"``).
numpy integers and floats are accepted wherever Python ints and floats are; ``bool`` is not an
int here (``True`` workers is a bug, not a number).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["boolean", "choice", "integer", "optional_timeout", "real", "string", "type_name"]

_INTEGER_TYPES = (int, np.integer)
_REAL_TYPES = (int, float, np.integer, np.floating)


def type_name(value: object) -> str:
    return type(value).__name__


def integer(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int within ``[minimum, maximum]`` (either bound may be open)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, _INTEGER_TYPES):
        raise TypeError(f"{name}: must be an int, not {type_name(value)}")
    number = operator.index(value)
    _check_range(number, name, minimum, maximum)
    return number


def real(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a Python float; NaN is always a ``ValueError``, infinity unless ``finite=False``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, _REAL_TYPES):
        raise TypeError(f"{name}: must be a number, not {type_name(value)}")
    number = float(value)
    if math.isnan(number) or (finite and math.isinf(number)):
        raise ValueError(f"{name}: must be a finite number, got {value!r}")
    if exclusive_minimum and minimum is not None and number <= minimum:
        raise ValueError(f"{name}: must be greater than {minimum}, got {value!r}")
    _check_range(number, name, minimum, maximum)
    return number


def optional_timeout(value: Any, name: str = "timeout") -> float | None:
    """``None`` (wait forever) or a non-negative number of seconds."""
    if value is None:
        return None
    return real(value, name, minimum=0.0, finite=False)


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: must be a bool, not {type_name(value)}")
    return bool(value)


def string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: must be a str, not {type_name(value)}")
    return value


def choice(value: Any, name: str, options: Sequence[str]) -> str:
    """One of ``options`` (strings)."""
    checked = string(value, name)
    if checked not in options:
        raise ValueError(f"{name}: must be one of {', '.join(map(repr, options))}, got {value!r}")
    return checked


def _check_range(number: float, name: str, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and maximum is not None and not minimum <= number <= maximum:
        raise ValueError(f"{name}: must be between {minimum} and {maximum}, got {number!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, got {number!r}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name}: must be at most {maximum}, got {number!r}")
