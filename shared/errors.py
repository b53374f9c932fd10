"""One exception hierarchy, carrying the classification of SPEC §6.

`GtcocoError` is the base; every subclass says what the platform should do with it:

- `ConversionError` (and its subclasses) is poison input: the same bytes will never convert,
  so it is reported (`error.json` under the input's prefix) and never retried.  Over HTTP it
  is a 4xx JSON error (`http_status`).
- `TransientError` may succeed on retry (storage 429/5xx, timeouts, resets, a busy lock):
  the trigger raises it so the platform retries; over HTTP it is a 503.
- `ConfigurationError` is the operator's to fix (equal buckets, a registry over its read
  limit, no credentials): the function refuses to start, or the event is retried until the
  operator has fixed it.

Anything else is a bug and propagates.
"""

from __future__ import annotations


class GtcocoError(Exception):
    """Base of every error this project raises on purpose."""

    http_status = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConversionError(GtcocoError):
    """Input that can never convert. `code` is stable; `pointer` is an RFC 6901 JSON pointer."""

    http_status = 422

    def __init__(self, code: str, message: str, pointer: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.pointer = pointer

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "pointer": self.pointer}

    def at(self, pointer: str) -> ConversionError:
        """The same error, pointing at `pointer` instead (same class, hence same status)."""
        return type(self)(self.code, self.message, pointer)


class BadRequest(ConversionError):
    """Input that is not even a document (invalid JSON, encoding, nesting; HTTP 400)."""

    http_status = 400


class TooLargeError(ConversionError):
    """Input over a configured limit (HTTP 413)."""

    http_status = 413


class TransientError(GtcocoError):
    """A failure that may succeed on retry: storage 429/5xx, timeouts, connection resets."""

    http_status = 503
    code = "transient"


class ConfigurationError(GtcocoError):
    """A deployment problem only the operator can fix; never the input's fault."""

    http_status = 500
    code = "configuration"


def escape_token(token: str | int) -> str:
    """One RFC 6901 reference token: `~` -> `~0`, `/` -> `~1` (in that order)."""
    return str(token).replace("~", "~0").replace("/", "~1")


def unescape_token(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def pointer_join(base: str, *parts: str | int) -> str:
    """Append reference tokens to a JSON pointer, each escaped on its own (RFC 6901)."""
    return base + "".join("/" + escape_token(part) for part in parts)


def pointer_tokens(pointer: str) -> list[str]:
    """The unescaped reference tokens of a pointer (`""` -> `[]`)."""
    if not pointer:
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"a JSON pointer starts with '/': {pointer!r}")
    return [unescape_token(t) for t in pointer[1:].split("/")]
