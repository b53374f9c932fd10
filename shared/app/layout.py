"""Where outputs go: a one-to-one map from (input object, batch job) to an output prefix.

The outputs of one input object sit under `<encoded name>@/`, where every segment of the
object's name is percent-encoded so that it holds only `[A-Za-z0-9._-]` and `%XX` (a leading
dot, `@` and `~` are always encoded), and `@` ends the input's name.  Hence:

- no encoded segment contains `@` or `~`, so the first segment that ends in `@` is where an
  input's name ends: no input's prefix is inside another's, whatever the names;
- a batch job's outputs sit at `<prefix>/jobs/<encoded reference id>/` (or `~<position>` for
  a job without one, `<encoded id>~<position>` for a repeated one), which no other reference id
  can produce, and which no file of a single job (`coco.json`, `masks/…`) shares;
- names that would exceed the storage service's 1024-byte limit are poison; their error goes
  to `~long/<sha256 of the name>@/error.json`, a prefix no encoded name can begin with.

Pure: names in, names out.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import unquote

MAX_NAME_BYTES = 1024  # Cloud Storage's limit on an object name, in UTF-8 bytes
TERMINATOR = "@"
REGISTRY = "_registry/categories.json"
LONG_NAMES = "~long"
# The longest name written under a job's folder, so a name's length is checked once up front.
LONGEST_FILE = "masks/colors/ffffff.png"
LOCK = "lock.json"
REPORT, ERROR = "report.json", "error.json"

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
_ENCODED_SEGMENT = r"(?:[A-Za-z0-9_-]|%[0-9A-F]{2})(?:[A-Za-z0-9._-]|%[0-9A-F]{2})*"
# An output: encoded segments, one ending in the terminator, then anything.
_OUTPUT = re.compile(rf"^(?:{_ENCODED_SEGMENT}/)*{_ENCODED_SEGMENT}@/")


def encode_segment(segment: str) -> str:
    """One path segment as `[A-Za-z0-9._-]` and `%XX`; a leading dot is encoded too, so `.`
    and `..` never appear as segments; the empty segment (from `a//b`) becomes `%2F`, which
    no real segment can give (a segment never holds `/`)."""
    if segment == "":
        return "%2F"
    out = []
    for i, byte in enumerate(segment.encode("utf-8", "surrogatepass")):
        if byte in _SAFE and not (i == 0 and byte == ord(".")):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def decode_segment(encoded: str) -> str:
    return "" if encoded == "%2F" else unquote(encoded, errors="surrogatepass")


def input_prefix(name: str) -> str:
    """The prefix of every output of the input object `name` (no trailing slash)."""
    return "/".join(encode_segment(s) for s in name.split("/")) + TERMINATOR


def name_of_prefix(prefix: str) -> str:
    """The input object name an `input_prefix` came from."""
    if not prefix.endswith(TERMINATOR):
        raise ValueError(f"not an input prefix: {prefix!r}")
    return "/".join(decode_segment(s) for s in prefix[: -len(TERMINATOR)].split("/"))


def long_name_prefix(name: str) -> str:
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{LONG_NAMES}/{digest}{TERMINATOR}"


def job_segment(reference_id: str | None, position: int, repeated: bool) -> str:
    """A batch job's folder name under `jobs/`: unique within its batch."""
    if reference_id is None or reference_id == "":
        return f"~{position}"
    encoded = encode_segment(reference_id)
    return f"{encoded}~{position}" if repeated else encoded


def fits(prefix: str, longest: str = LONGEST_FILE) -> bool:
    return len(f"{prefix}/{longest}".encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES


def is_output_name(name: str) -> bool:
    """Whether `name` has the shape of a gtcoco output (or of the registry)."""
    return name == REGISTRY or name.startswith(f"{LONG_NAMES}/") or _OUTPUT.match(name) is not None


@dataclass(frozen=True)
class Place:
    """The output folder of one job (or of a whole batch): names relative to it."""

    prefix: str  # no trailing slash

    def __truediv__(self, rel: str) -> str:
        return f"{self.prefix}/{rel}"

    @property
    def report(self) -> str:
        return self / REPORT

    @property
    def error(self) -> str:
        return self / ERROR

    def job(self, segment: str) -> Place:
        return Place(f"{self.prefix}/jobs/{segment}")
