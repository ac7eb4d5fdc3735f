"""One set of option validators: every reranker, the pipeline, the panel and the CLI check options here.

Each function returns the value in its canonical type (a NumPy integer becomes an ``int``) or raises
:class:`~rerankpd.errors.ConfigurationError` (a ``ValueError``) naming the option, the rule and the value
given, so a bad option fails where it is set, never at the first retry mid-run.

Examples
--------
>>> whole("batch_size", 32, minimum=1)
32
>>> import numpy as np
>>> whole("top_n", np.int64(3), minimum=1)
3
>>> number("backoff_cap", 2, minimum=0)
2.0
>>> one_of("errors", "coerce", ("raise", "coerce"))
'coerce'
>>> whole("batch_size", 0, minimum=1)
Traceback (most recent call last):
...
rerankpd.errors.ConfigurationError: batch_size must be a whole number >= 1, got 0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, Literal, TypeGuard, overload

from ..errors import ConfigurationError

__all__ = ["boolean", "is_whole", "number", "one_of", "timeout_pair", "whole"]


def is_whole(value: Any) -> TypeGuard[int]:
    """True for an ``int`` or a NumPy integer (which acts as one), never for a ``bool``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f" >= {minimum:g}"
    if maximum is not None:
        return f" <= {maximum:g}"
    return ""


@overload
def whole(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None, allow_none: Literal[False] = False
) -> int: ...
@overload
def whole(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None, allow_none: bool
) -> int | None: ...
def whole(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None, allow_none: bool = False
) -> int | None:
    """``value`` as an ``int`` within ``[minimum, maximum]``; None passes only with ``allow_none``.

    >>> whole("overlap_tokens", None, minimum=0, allow_none=True) is None
    True
    """
    if value is None and allow_none:
        return None
    if not is_whole(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        extra = " or None" if allow_none else ""
        raise ConfigurationError(f"{name} must be a whole number{_bounds(minimum, maximum)}{extra}, got {value!r}")
    return int(value)


@overload
def number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    allow_none: Literal[False] = False,
    allow_inf: bool = False,
) -> float: ...
@overload
def number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    allow_none: bool,
    allow_inf: bool = False,
) -> float | None: ...
def number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    allow_none: bool = False,
    allow_inf: bool = False,
) -> float | None:
    """``value`` as a finite ``float`` (or inf with ``allow_inf``) within the bounds.

    ``exclusive_minimum=True`` makes ``minimum`` itself invalid (``> minimum``).

    >>> number("timeout", 5, minimum=0, exclusive_minimum=True)
    5.0
    >>> number("rate", 0, minimum=0, exclusive_minimum=True)
    Traceback (most recent call last):
    ...
    rerankpd.errors.ConfigurationError: rate must be a number > 0, got 0
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value_f = float(value)
        ok = not math.isnan(value_f) and (allow_inf or math.isfinite(value_f))
        if ok and minimum is not None:
            ok = value_f > minimum if exclusive_minimum else value_f >= minimum
        if ok and maximum is not None:
            ok = value_f <= maximum
    if not ok:
        if exclusive_minimum and minimum is not None:
            rule = f" > {minimum:g}" + (f" and <= {maximum:g}" if maximum is not None else "")
        else:
            rule = _bounds(minimum, maximum)
        extra = " or None" if allow_none else ""
        raise ConfigurationError(f"{name} must be a number{rule}{extra}, got {value!r}")
    return value_f


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else an error listing them."""
    choices = tuple(choices)
    try:
        if value in choices:
            return value
    except TypeError:  # unhashable or uncomparable: not one of them
        pass
    raise ConfigurationError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def boolean(name: str, value: Any) -> bool:
    """``value`` if it is a ``bool`` (a NumPy bool too)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise ConfigurationError(f"{name} must be True or False, got {value!r}")


def timeout_pair(name: str, value: Any) -> tuple[float, float]:
    """Seconds, or a ``(connect, read)`` pair of positive seconds, as a tuple of two floats.

    >>> timeout_pair("timeout", 5), timeout_pair("timeout", [2, 30])
    ((5.0, 5.0), (2.0, 30.0))
    """
    if isinstance(value, (list, tuple)) and len(value) == 2:
        parts = value
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        parts = (value, value)
    else:
        raise ConfigurationError(f"{name} must be seconds or a (connect, read) pair of seconds, got {value!r}")
    try:
        return tuple(number(name, part, minimum=0, exclusive_minimum=True) for part in parts)  # type: ignore
    except ConfigurationError:
        raise ConfigurationError(
            f"{name} must be positive seconds or a (connect, read) pair of positive seconds, got {value!r}"
        ) from None
