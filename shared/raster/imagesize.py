"""Image size from the first bytes of a file: never the whole image (SPEC §2)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable

from PIL import Image

from shared.errors import ConversionError


def size_from_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) if `data` holds the whole header; Pillow's `open` decodes no pixels."""
    with warnings.catch_warnings():
        # Only the size is wanted; a huge image is not a bomb until someone decodes it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Exception:  # untrusted, maybe truncated bytes: any failure means "not yet"
            return None
    return int(width), int(height)


def size_from_chunks(chunks: Iterable[bytes], max_bytes: int) -> tuple[int, int, int]:
    """(width, height, bytes consumed), pulling chunks only until the header is complete.

    The caller's iterator is closed as soon as the size is known, so the rest of the image
    is never transferred.
    """
    buffer = bytearray()
    iterator = iter(chunks)
    try:
        for chunk in iterator:
            buffer += chunk
            size = size_from_header(bytes(buffer))
            if size is not None:
                return size[0], size[1], len(buffer)
            if len(buffer) >= max_bytes:
                break
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    raise ConversionError(
        "image_size_unavailable", f"no readable image header in the first {len(buffer)} bytes"
    )
