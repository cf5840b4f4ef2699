"""Canonical JSON text and SHA-256 fingerprint of job parameters.

This module is the Python twin of ``plpgsql/020_canonical.sql``
(``etl.canonical_json(jsonb)`` / ``etl.param_fingerprint(jsonb)``).  Both
implementations must produce byte-identical output; the shared vector file
``tests/vectors/param_fingerprint.json`` is checked against both sides
(``tests/test_canonical.py`` and ``pgtap/canonical.sql``).

Canonical form
--------------
* Objects: members sorted by key in Unicode code point order (which equals
  UTF-8 byte order, i.e. PostgreSQL ``COLLATE "C"``; this differs from the
  UTF-16 order of RFC 8785 only for keys that mix astral characters with
  U+E000..U+FFFF).  No whitespace anywhere: ``{"a":1,"b":[true,null]}``.
  Duplicate keys in JSON text: the last one wins (jsonb semantics).
* Arrays keep their element order.
* Strings (keys and values): only ``"``, ``\\`` and control characters below
  U+0020 are escaped; ``\\b \\f \\n \\r \\t`` use the short escapes, the other
  controls use ``\\u00XX`` with lowercase hex.  Everything else (non-ASCII,
  U+007F, U+2028, astral characters, combining marks) is emitted raw and
  encoded as UTF-8.  Strings are not Unicode-normalised.  This is exactly
  PostgreSQL's ``escape_json`` (``to_json(text)`` / jsonb output).
* Numbers are compared by exact value: ``1``, ``1.0``, ``1e0`` and ``10E-1``
  all become ``1``; ``1.50`` -> ``1.5``; ``-0`` -> ``0``; ``1e2`` -> ``100``;
  ``1.5e-7`` -> ``0.00000015``.  Output is plain decimal notation: no
  exponent, no trailing zeros after the point, no trailing point, no leading
  ``+``.  Large integers and long decimals are kept exactly (no binary float
  rounding).  JSON text is parsed losslessly (floats as ``Decimal``); Python
  ``float`` values given directly are converted with ``Decimal(repr(f))``
  (the shortest repr that round-trips, so ``0.1`` stays ``0.1``).
  ``bool`` is not a number (``True`` -> ``true``).
* ``null``, ``true``, ``false`` as usual.
* The fingerprint is the lowercase hex SHA-256 of the UTF-8 bytes of the
  canonical text of the parameter object.  ``None`` parameters mean "no
  parameters" and fingerprint like ``{}`` (the SQL side does the same for SQL
  NULL and for JSON ``null``).

Domain
------
The accepted values are exactly those PostgreSQL ``jsonb`` can hold, so a
fingerprint computed here can always be reproduced in the database:
``ValueError`` is raised for NaN/Infinity, for strings containing U+0000 or
lone surrogates, and for numbers outside the ``numeric`` range (more than
131072 digits before the decimal point, or more than 16383 digits after it
*as written*, e.g. ``1.0e-16383``, which PostgreSQL rejects too).
``TypeError`` is raised for non-``str`` object keys and unsupported types.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

__all__ = ["canonical_json", "canonical_json_text", "param_fingerprint"]

# PostgreSQL numeric limits (int16 weight in base 10000, 14-bit dscale).
_MAX_ADJUSTED_EXPONENT = 131071  # at most 131072 digits before the point
_MAX_DSCALE = 16383  # at most 16383 digits after the point (as written)
# Integers below this magnitude are formatted with int.__repr__ directly
# (well below Python's default 4300-digit int/str conversion limit).
_INT_FAST_LIMIT = 10**4000

# Characters escaped in strings, and their escapes (PostgreSQL escape_json).
_ESCAPES = {chr(i): "\\u%04x" % i for i in range(0x20)}
_ESCAPES.update(
    {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}
)
_ESCAPE_RE = re.compile('[\\x00-\\x1f"\\\\]')
# Characters jsonb cannot hold (U+0000) or UTF-8 cannot encode (surrogates).
_INVALID_RE = re.compile("[\\x00\\ud800-\\udfff]")


def _quote(s: str) -> str:
    """Return ``s`` as a canonical JSON string literal (with the quotes)."""
    bad = _INVALID_RE.search(s)
    if bad is not None:
        raise ValueError(
            "string contains U+%04X, which PostgreSQL jsonb cannot store: %r"
            % (ord(bad.group()), s[:50])
        )
    return '"' + _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], s) + '"'


def _format_decimal(d: Decimal) -> str:
    """Plain decimal notation of a finite Decimal, exact, trailing zeros removed."""
    if not d.is_finite():
        raise ValueError("JSON numbers must be finite, got %s" % d)
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    if exponent < -_MAX_DSCALE:
        raise ValueError(
            "number has more than %d digits after the decimal point "
            "(PostgreSQL numeric limit): %s" % (_MAX_DSCALE, d)
        )
    coeff = "".join(map(str, digits)).lstrip("0")
    if not coeff:
        return "0"  # zero, including -0 and 0e-5
    # Drop trailing zeros of the coefficient (value unchanged).
    stripped = coeff.rstrip("0")
    exponent += len(coeff) - len(stripped)
    coeff = stripped
    if exponent + len(coeff) - 1 > _MAX_ADJUSTED_EXPONENT:
        raise ValueError(
            "number has more than %d digits before the decimal point "
            "(PostgreSQL numeric limit)" % (_MAX_ADJUSTED_EXPONENT + 1)
        )
    if exponent >= 0:
        text = coeff + "0" * exponent
    else:
        point = len(coeff) + exponent  # digits before the decimal point
        if point > 0:
            text = coeff[:point] + "." + coeff[point:]
        else:
            text = "0." + "0" * (-point) + coeff
    return "-" + text if sign else text


def _format_int(n: int) -> str:
    if -_INT_FAST_LIMIT < n < _INT_FAST_LIMIT:
        return int.__repr__(n)  # bypass overridden __str__/__repr__ of subclasses
    return _format_decimal(Decimal(n))


def _format_float(f: float) -> str:
    if not math.isfinite(f):
        raise ValueError("JSON numbers must be finite, got %r" % f)
    return _format_decimal(Decimal(float.__repr__(f)))


def _emit(value: Any, out: list, active: set) -> None:
    """Append the canonical text of ``value`` to ``out`` (list of str)."""
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, int):  # bool handled above
        out.append(_format_int(value))
    elif isinstance(value, float):
        out.append(_format_float(value))
    elif isinstance(value, Decimal):
        out.append(_format_decimal(value))
    elif isinstance(value, Mapping):
        marker = id(value)
        if marker in active:
            raise ValueError("circular reference detected")
        active.add(marker)
        items = list(value.items())
        for key, _ in items:
            if not isinstance(key, str):
                raise TypeError(
                    "object keys must be str, got %s key %r" % (type(key).__name__, key)
                )
        items.sort(key=lambda kv: kv[0])  # str order == code point order
        out.append("{")
        first = True
        for key, item in items:
            if not first:
                out.append(",")
            first = False
            out.append(_quote(key))
            out.append(":")
            _emit(item, out, active)
        out.append("}")
        active.discard(marker)
    elif isinstance(value, (list, tuple)):
        marker = id(value)
        if marker in active:
            raise ValueError("circular reference detected")
        active.add(marker)
        out.append("[")
        first = True
        for item in value:
            if not first:
                out.append(",")
            first = False
            _emit(item, out, active)
        out.append("]")
        active.discard(marker)
    else:
        raise TypeError(
            "value of type %s is not JSON serializable: %r" % (type(value).__name__, value)
        )


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of a Python value.

    ``value`` may be a dict (any ``Mapping`` with ``str`` keys), list/tuple,
    str, int, float, ``Decimal``, bool or None, nested arbitrarily.  See the
    module docstring for the rules.

    Raises:
        TypeError: a non-``str`` object key (the message names the key) or an
            unsupported type.
        ValueError: NaN/Infinity, U+0000 or lone surrogates in a string, a
            number outside PostgreSQL's numeric range, or a circular reference.
    """
    out: list = []
    _emit(value, out, set())
    return "".join(out)


def _parse_int(text: str) -> Any:
    # Very long integers become Decimal to avoid Python's int/str digit limit.
    return int(text) if len(text) < 4000 else Decimal(text)


def _parse_float(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError("number out of range: %s" % text[:50]) from None


def _reject_constant(name: str) -> Any:
    raise ValueError("%s is not valid JSON (numbers must be finite)" % name)


def canonical_json_text(text: str) -> str:
    """Parse JSON text losslessly and return its canonical JSON text.

    Numbers keep their exact value (non-integers are parsed as ``Decimal``),
    so ``1.0``, ``1e0`` and ``10E-1`` all give ``1`` and
    ``123456789012345678901234567890`` is kept as is.  Duplicate object keys:
    the last one wins.  ``NaN``/``Infinity`` are rejected with ``ValueError``
    (``json.JSONDecodeError``, also a ``ValueError``, for malformed text).
    """
    value = json.loads(
        text,
        parse_float=_parse_float,
        parse_int=_parse_int,
        parse_constant=_reject_constant,
    )
    return canonical_json(value)


def param_fingerprint(params: Optional[Mapping[str, Any]]) -> str:
    """Return the lowercase hex SHA-256 of the canonical JSON of ``params``.

    ``params`` is the job parameter object (a dict); ``None`` means no
    parameters and gives the fingerprint of ``{}``.  Equal to
    ``etl.param_fingerprint(jsonb)`` in the database for the same value.

    Raises:
        TypeError: ``params`` is not a mapping (or see :func:`canonical_json`).
        ValueError: see :func:`canonical_json`.
    """
    if params is None:
        params = {}
    elif not isinstance(params, Mapping):
        raise TypeError(
            "params must be a dict or None, got %s" % type(params).__name__
        )
    return hashlib.sha256(canonical_json(params).encode("utf-8")).hexdigest()
