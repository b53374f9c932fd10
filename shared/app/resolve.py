"""The resolve stage: every read a job needs before it can convert — image headers, frame
headers, its mask, its category ids — started together on one bounded pool.

A batch's jobs are resolved a window ahead of the one converting (`prefetch`), so their
reads wait on the network at the same time instead of one after another.  Reads are leaf
tasks: none waits on another, so a pool of any size cannot deadlock.  Category ids are
asked for in job order, on the caller's thread, so a run over the same inputs always gives
the same ids.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from shared.app.convert import Inputs, job_labels, missing_mask
from shared.coco.builder import ImageSize
from shared.config import Limits
from shared.errors import ConversionError, pointer_join
from shared.gtstudio.records import Job
from shared.io.fetch import UrlReader
from shared.io.registry import CategoryRegistry
from shared.raster.imagesize import size_from_chunks

T = TypeVar("T")
Part = Future[object] | object  # a read in flight, or a value known without reading


@dataclass
class Pending:
    """A job's reads in flight; `result` waits for them and adds the category ids."""

    job: Job
    registry: CategoryRegistry
    mask: Part = None
    header: Part = None
    frames: dict[str, Part] = field(default_factory=dict)

    def result(self) -> Inputs:
        mask, header = _settle(self.mask), _settle(self.header)
        frames: dict[str, ImageSize] | ConversionError = {}
        for frame_id, part in self.frames.items():
            size = _settle(part)
            if isinstance(size, ConversionError):
                frames = size  # the first frame, in frame order, that could not be read
                break
            assert isinstance(frames, dict) and isinstance(size, ImageSize)
            frames[frame_id] = size
        ids: Mapping[str, int] | ConversionError | None = None
        if not any(isinstance(p, ConversionError) for p in (mask, header, frames)):
            # A job that cannot convert adds no label to the registry.
            try:
                ids = self.registry.ensure(job_labels(self.job))
            except ConversionError as exc:  # raised by `convert_job` where it always was
                ids = exc
        return Inputs(
            mask=mask,  # type: ignore[arg-type]
            header_size=header,  # type: ignore[arg-type]
            frames=frames,
            ids=ids,
        )


def _settle(part: Part) -> object:
    if isinstance(part, Future):
        try:
            return part.result()
        except ConversionError as exc:
            return exc
    return part


class JobResolver:
    def __init__(
        self,
        reader: UrlReader,
        registry: CategoryRegistry,
        limits: Limits,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.reader, self.registry, self.limits, self.pool = reader, registry, limits, pool

    def start(self, job: Job, relative_to: str = "", mask: bytes | None = None) -> Pending:
        """Start every read `job` needs (`mask`: its mask, when the caller holds it)."""
        pending = Pending(job, self.registry)
        if job.raster is not None:
            if mask is not None:
                pending.mask = mask
            elif not job.raster.url:
                pending.mask = missing_mask(job)
            else:
                pending.mask = self.pool.submit(self._read_mask, job, relative_to)
        explicit = bool(job.width and job.height)
        urls = [
            (url, pointer_join(job.pointer, key))
            for url, key in (
                (job.image_url_original, "image_url_original"),
                (job.image_url, "image_url"),
            )
            if url
        ]
        if not explicit and job.raster is None and (urls or not job.frames):
            missing = pointer_join(job.pointer, "image_url")
            pending.header = self.pool.submit(self.header_size, urls, relative_to, missing)
        for frame in job.frames:
            if frame.width and frame.height:
                pending.frames[frame.frame_id] = ImageSize(frame.width, frame.height, "explicit")
            elif explicit:
                assert job.width and job.height
                pending.frames[frame.frame_id] = ImageSize(job.width, job.height, "explicit")
            else:
                pending.frames[frame.frame_id] = self.pool.submit(
                    self.header_size, frame.urls(), relative_to, pointer_join(frame.pointer, "src")
                )
        return pending

    def resolve(self, job: Job, relative_to: str = "", mask: bytes | None = None) -> Inputs:
        return self.start(job, relative_to, mask).result()

    def header_size(
        self, urls: list[tuple[str, str]], relative_to: str, missing_pointer: str
    ) -> ImageSize:
        """The size in the header of the first URL that answers."""
        failures = []
        for url, pointer in urls:
            try:
                w, h, _ = size_from_chunks(
                    self.reader.chunks(url, relative_to), self.limits.header_max_bytes
                )
                return ImageSize(w, h, "header", url)
            except ConversionError as exc:
                failures.append(f"{pointer.rsplit('/', 1)[-1]}: {exc.message}")
        detail = "; ".join(failures) or "no width/height, mask or image URL in the job"
        raise ConversionError(
            "image_size_unavailable",
            f"cannot learn the image size ({detail})",
            urls[0][1] if urls else missing_pointer,
        )

    def _read_mask(self, job: Job, relative_to: str) -> bytes:
        assert job.raster is not None and job.raster.url is not None
        try:
            return self.reader.read_all(job.raster.url, relative_to)
        except ConversionError as exc:
            raise exc.at(pointer_join(job.raster.pointer, "url")) from None


def prefetch(
    items: Iterable[T], start: Callable[[T], Pending | None], window: int
) -> Iterator[tuple[T, Pending | None]]:
    """`items` in order, each with its reads started `window` items ahead of its turn.
    Memory: `window` jobs and their reads, whatever the length of `items`."""
    ahead: deque[tuple[T, Pending | None]] = deque()
    source = iter(items)
    for item in source:
        ahead.append((item, start(item)))
        if len(ahead) >= window:
            yield ahead.popleft()
    while ahead:
        yield ahead.popleft()
