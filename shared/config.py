"""Configuration: every knob is an environment variable with a documented default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

MIB = 1024 * 1024


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(sorted({p.strip() for p in env.get(name, "").split(",") if p.strip()}))


@dataclass(frozen=True)
class Limits:
    """Input limits of SPEC §6; each guards memory or time against hostile input."""

    max_object_bytes: int = 512 * MIB
    max_json_bytes: int = 64 * MIB
    max_mask_pixels: int = 100_000_000
    max_json_depth: int = 64
    max_batch_jobs: int = 10_000
    max_points_per_shape: int = 20_000
    fetch_max_bytes: int = 256 * MIB
    fetch_timeout_s: float = 30.0
    header_max_bytes: int = 4 * MIB
    # Registry: bounded so that it can never outgrow the size it is read with.
    max_label_chars: int = 256
    max_categories: int = 10_000
    # Outline steps (pixels walked along every edge) pycocotools may rasterise for one shape.
    max_raster_work: int = 4_000_000
    # A batch larger than this is read in ranged reads of this size, twice, never whole.
    read_chunk_bytes: int = 1 * MIB

    @property
    def registry_max_bytes(self) -> int:
        """The largest registry the limits allow: every label at its longest, each character
        escaped (`\\uXXXX`, 6 bytes), plus the id and punctuation of an entry."""
        return 1024 + self.max_categories * (6 * self.max_label_chars + 64)


@dataclass(frozen=True)
class Options:
    """Choices about the COCO that is written (they change outputs, so reports record them)."""

    rect_as_polygon: bool = False
    raster_segmentation: str = "auto"  # auto | rle | polygon

    def as_dict(self) -> dict[str, object]:
        return {
            "rect_as_polygon": self.rect_as_polygon,
            "raster_segmentation": self.raster_segmentation,
        }


@dataclass(frozen=True)
class Config:
    input_bucket: str = ""
    output_bucket: str = ""
    categories_seed: str = ""
    max_event_age_s: int = 6 * 3600
    fetch_allow_hosts: tuple[str, ...] = ()
    fetch_https_only: bool = False  # real exports use plain-http CDN URLs
    # Longer than any function's timeout: a writer that died holding it blocks no one longer.
    lock_lease_s: int = 900
    storage_retry_deadline_s: float = 60.0
    # Reads (headers, masks) and writes in flight at once: the jobs of a batch wait on the
    # network together instead of one after another.  1 makes every stage serial.
    io_workers: int = 32
    # Backfills: the Cloud Tasks queue, the HTTP function's URL that tasks call, the
    # account whose OIDC token they carry (empty: POST /backfill is off), tasks a run.
    tasks_queue: str = ""
    tasks_url: str = ""
    tasks_service_account: str = ""
    backfill_max_tasks: int = 100_000
    # Fan-out: a batch of more jobs than this is converted as Cloud Tasks shards of this
    # many jobs each (with the queue above; without it, a batch runs in one invocation).  A shard must fit the HTTP
    # function's timeout: at the measured ~640 jobs/s, 2,000 jobs take a few seconds of
    # conversion on top of reading the batch.
    shard_jobs: int = 2000
    # How long a fan-out holds its input against a newer generation's run (the newer one is
    # retried by the platform meanwhile); past it, the newer one takes over.
    fanout_lease_s: int = 6 * 3600
    # POST /assemble over more jobs than this runs as Cloud Tasks: a map task reading this
    # many jobs each (~1,000 jobs/s), then one reduce (with the queue above).
    assemble_shard_jobs: int = 20_000
    # How long Cloud Tasks waits for a task's answer before it tries again: the HTTP
    # function's timeout (infra/ sets it; 300 s is its default there), at most 1,800 s.
    task_deadline_s: int = 300
    limits: Limits = field(default_factory=Limits)
    options: Options = field(default_factory=Options)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        d = Limits()
        limits = Limits(
            max_object_bytes=_int(env, "GTCOCO_MAX_OBJECT_BYTES", d.max_object_bytes),
            max_json_bytes=_int(env, "GTCOCO_MAX_JSON_BYTES", d.max_json_bytes),
            max_mask_pixels=_int(env, "GTCOCO_MAX_MASK_PIXELS", d.max_mask_pixels),
            max_json_depth=_int(env, "GTCOCO_MAX_JSON_DEPTH", d.max_json_depth),
            max_batch_jobs=_int(env, "GTCOCO_MAX_BATCH_JOBS", d.max_batch_jobs),
            max_points_per_shape=_int(env, "GTCOCO_MAX_POINTS", d.max_points_per_shape),
            fetch_max_bytes=_int(env, "GTCOCO_FETCH_MAX_BYTES", d.fetch_max_bytes),
            fetch_timeout_s=_float(env, "GTCOCO_FETCH_TIMEOUT_S", d.fetch_timeout_s),
            max_label_chars=_int(env, "GTCOCO_MAX_LABEL_CHARS", d.max_label_chars),
            max_categories=_int(env, "GTCOCO_MAX_CATEGORIES", d.max_categories),
            max_raster_work=_int(env, "GTCOCO_MAX_RASTER_WORK", d.max_raster_work),
            read_chunk_bytes=_int(env, "GTCOCO_READ_CHUNK_BYTES", d.read_chunk_bytes),
        )
        mode = env.get("GTCOCO_RASTER_SEGMENTATION", "auto").strip().lower() or "auto"
        if mode not in {"auto", "rle", "polygon"}:
            raise ValueError(
                f"GTCOCO_RASTER_SEGMENTATION must be auto, rle or polygon, got {mode!r}"
            )
        options = Options(
            rect_as_polygon=_bool(env, "GTCOCO_RECT_AS_POLYGON", False),
            raster_segmentation=mode,
        )
        return cls(
            input_bucket=env.get("INPUT_BUCKET", "").strip(),
            output_bucket=env.get("OUTPUT_BUCKET", "").strip(),
            categories_seed=env.get("GTCOCO_CATEGORIES", "").strip(),
            max_event_age_s=_int(env, "GTCOCO_MAX_EVENT_AGE_S", 6 * 3600),
            fetch_allow_hosts=_list(env, "GTCOCO_FETCH_ALLOW_HOSTS"),
            fetch_https_only=_bool(env, "GTCOCO_FETCH_HTTPS_ONLY", False),
            lock_lease_s=_int(env, "GTCOCO_LOCK_LEASE_S", 900),
            storage_retry_deadline_s=_float(env, "GTCOCO_STORAGE_RETRY_DEADLINE_S", 60.0),
            io_workers=_int(env, "GTCOCO_IO_WORKERS", 32),
            tasks_queue=env.get("GTCOCO_TASKS_QUEUE", "").strip(),
            tasks_url=env.get("GTCOCO_TASKS_URL", "").strip(),
            tasks_service_account=env.get("GTCOCO_TASKS_SERVICE_ACCOUNT", "").strip(),
            backfill_max_tasks=_int(env, "GTCOCO_BACKFILL_MAX_TASKS", 100_000),
            shard_jobs=_int(env, "GTCOCO_SHARD_JOBS", 2000),
            fanout_lease_s=_int(env, "GTCOCO_FANOUT_LEASE_S", 6 * 3600),
            assemble_shard_jobs=_int(env, "GTCOCO_ASSEMBLE_SHARD_JOBS", 20_000),
            task_deadline_s=min(1800, _int(env, "GTCOCO_TASK_DEADLINE_S", 300)),
            limits=limits,
            options=options,
        )
