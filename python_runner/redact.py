"""Redaction of secrets and PII in log messages and structured fields, before anything is written.

    redact(value)     -> (redacted copy, whether anything was replaced)
    redact_text(text) -> (redacted text, whether anything was replaced)

Rules:
  * A mapping key that contains (case-insensitive, ``-`` and spaces read as ``_``) one of
    SECRET_KEY_PARTS, or one of SECRET_KEY_WORDS with no letter next to it, has its whole value
    replaced by "[REDACTED]", whatever its type
    (None and "" are left alone: there is nothing to hide).
  * Every string anywhere (values, list items, the message) goes through redact_text:
      - URL credentials            scheme://user:pw@host   -> scheme://user:[REDACTED]@host
      - bearer tokens              Bearer abc.def          -> Bearer [REDACTED]
      - JWTs (eyJ... . ... . ...)  three base64url segments -> [REDACTED]
      - secret key=value / key: value pairs in free text, the key containing a secret name
                                   password=hunter2        -> password=[REDACTED]
      - e-mail addresses           bob@example.com         -> [EMAIL]
  * Lists, tuples and dicts are walked recursively; the input is never mutated: containers are
    always copied, scalars other than str are returned as is. A reference cycle becomes "[CYCLE]".

Key matching is by substring, on purpose (db_password, x-api-key, session_cookie): a few
harmless keys such as "token_count" are redacted too; that is the safe direction.
"""
from __future__ import annotations

import functools
import re
from typing import Any

REDACTED = "[REDACTED]"
EMAIL = "[EMAIL]"

SECRET_KEY_PARTS: tuple[str, ...] = (
    "password", "passwd", "pwd", "secret", "token", "authorization", "api_key", "apikey",
    "access_key", "private_key", "cookie", "session", "credential",
)
# Secret names too short to match inside other words ("pass" is in "passenger", "bypass",
# "passed"): they count only with no letter next to them (pass, db_pass, pass_2, X-Pass).
SECRET_KEY_WORDS: tuple[str, ...] = ("pass",)

# In free text, api_key / access_key / private_key may also be written with "-" or nothing.
_KEY_ALTERNATION = "|".join(
    [re.escape(p).replace("_", "[_-]?") if "_" in p else re.escape(p) for p in SECRET_KEY_PARTS]
    + [rf"(?<![A-Za-z]){re.escape(w)}(?![A-Za-z])" for w in SECRET_KEY_WORDS])
_SECRET_WORD = re.compile("|".join(rf"(?<![a-z]){re.escape(w)}(?![a-z])" for w in SECRET_KEY_WORDS))

_URL_CREDENTIALS = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)(?P<pw>[^\s/@]+)(?P<at>@)", re.I)
_BEARER = re.compile(r"\b(?P<scheme>bearer)\s+(?!\[REDACTED\])[A-Za-z0-9\-._~+/]+=*", re.I)
_JWT = re.compile(r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}(?![A-Za-z0-9_\-])")
_KEY_VALUE = re.compile(
    r"(?<![A-Za-z0-9_\-])"
    r"(?P<key>[A-Za-z0-9_\-.]*?(?:" + _KEY_ALTERNATION + r")[A-Za-z0-9_\-.]*)"
    r"(?P<sep>[\"']?\s*[=:]\s*)"
    r"(?P<scheme>(?:bearer|basic|token|digest)\s+)?"
    r"(?P<value>\[REDACTED\]|\"[^\"]*\"|'[^']*'|[^\s,;&\"'}\]]+)",
    re.I)
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b")


# Every pattern above needs one of these: a text without any is returned as is after one search
# (most log fields are ids, slugs and statuses; the runner logs two lines per run).
_MAY_HOLD_SECRET = re.compile(r"[@=:]|bearer|eyJ", re.I)


@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    k = name.lower().replace("-", "_").replace(" ", "_")
    return any(part in k for part in SECRET_KEY_PARTS) or _SECRET_WORD.search(k) is not None


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key names a secret (case-insensitive substring of SECRET_KEY_PARTS)."""
    return _is_secret_name(str(key))


def _key_value(m: re.Match) -> str:
    value = m.group("value")
    if value.strip("\"'") == REDACTED:
        return m.group(0)
    quote = value[0] if value[0] in "\"'" else ""
    return f"{m.group('key')}{m.group('sep')}{m.group('scheme') or ''}{quote}{REDACTED}{quote}"


def redact_text(text: str) -> tuple[str, bool]:
    """Redact secrets and e-mail addresses inside free text; returns (text, changed)."""
    if not isinstance(text, str) or not text or not _MAY_HOLD_SECRET.search(text):
        return text, False
    out = _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}{REDACTED}{m.group('at')}"
                               if m.group("pw") != REDACTED else m.group(0), text)
    out = _BEARER.sub(lambda m: f"{m.group('scheme')} {REDACTED}", out)
    out = _JWT.sub(REDACTED, out)
    out = _KEY_VALUE.sub(_key_value, out)
    out = _EMAIL.sub(EMAIL, out)
    return out, out != text


def _redact(value: Any, path: set[int]) -> tuple[Any, bool]:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        if id(value) in path:
            return "[CYCLE]", False
        path.add(id(value))
        try:
            out, changed = {}, False
            for k, v in value.items():
                if is_secret_key(k) and v is not None and v != "":
                    out[k] = REDACTED
                    changed = True
                else:
                    out[k], c = _redact(v, path)
                    changed = changed or c
            return out, changed
        finally:
            path.discard(id(value))
    if isinstance(value, (list, tuple)):
        if id(value) in path:
            return "[CYCLE]", False
        path.add(id(value))
        try:
            items, changed = [], False
            for v in value:
                r, c = _redact(v, path)
                items.append(r)
                changed = changed or c
            return (tuple(items) if isinstance(value, tuple) else items), changed
        finally:
            path.discard(id(value))
    return value, False


def redact(value: Any) -> tuple[Any, bool]:
    """A redacted copy of value (str, dict, list, tuple, nested) and whether anything was replaced."""
    return _redact(value, set())


def redact_outcome(outcome: dict) -> dict:
    """An outcome with its free text redacted before it leaves the process: the message and error
    detail, and those of each group member it reports for."""
    out = dict(outcome)
    if isinstance(out.get("message"), str):
        out["message"] = redact_text(out["message"])[0]
    if out.get("error_detail") is not None:
        out["error_detail"] = redact(out["error_detail"])[0]
    if isinstance(out.get("members"), list):
        out["members"] = [redact_outcome(m) if isinstance(m, dict) else m for m in out["members"]]
    return out
