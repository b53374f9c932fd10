"""The two failure kinds of SPEC §6.

`ConversionError` is poison input: the same bytes will never convert, so it is reported
(`_errors/<key>.json`) and never retried.  `TransientError` is the platform's to retry.
Everything else is a bug and propagates.
"""

from __future__ import annotations


class ConversionError(Exception):
    """Input that can never convert. `code` is stable; `pointer` is an RFC 6901 JSON pointer."""

    http_status = 422

    def __init__(self, code: str, message: str, pointer: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.pointer = pointer

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "pointer": self.pointer}


class TooLargeError(ConversionError):
    """Input over a configured limit (HTTP 413)."""

    http_status = 413


class TransientError(Exception):
    """A failure that may succeed on retry: storage 429/5xx, timeouts, connection resets."""


def pointer_join(base: str, *parts: str | int) -> str:
    """Append reference tokens to a JSON pointer, escaping them per RFC 6901."""
    out = base
    for part in parts:
        out += "/" + str(part).replace("~", "~0").replace("/", "~1")
    return out
