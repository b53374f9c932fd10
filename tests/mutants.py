"""Break each guard of SPEC §6 and §7 once and check the suite notices (`make mutants`).

Each mutant replaces one guard's text in a scratch git worktree of HEAD, runs the tests with
`-x`, and counts as caught when they fail.  About a minute a mutant; not part of `make test`.
Usage: python -m tests.mutants [label-substring ...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class Mutant(NamedTuple):
    label: str
    path: str
    old: str
    new: str


MUTANTS = [Mutant(*m) for m in [
 # SPEC §7
 ("fetch: non-global addresses allowed", "shared/io/fetch.py", "if not ip.is_global or ip.is_multicast:", "if ip.is_multicast:"),
 ("fetch: multicast allowed", "shared/io/fetch.py", "if not ip.is_global or ip.is_multicast:", "if not ip.is_global:"),
 ("fetch: site-local / NAT64 local-use allowed", "shared/io/fetch.py", "if any(ip in net for net in _V6_REFUSED):", "if False:"),
 ("fetch: embedded IPv4 ignored", "shared/io/fetch.py", "return all(self.address_allowed(v4) for v4 in embedded_ipv4(ip))", "return True"),
 ("fetch: 6to4 not decoded", "shared/io/fetch.py", "    if ip.sixtofour is not None:", "    if False:"),
 ("fetch: Teredo not decoded", "shared/io/fetch.py", "    if ip.teredo is not None:", "    if False:"),
 ("fetch: NAT64 well-known prefix not decoded", "shared/io/fetch.py", '        "64:ff9b::/96",  # NAT64', '        "::1/128",  # NAT64'),
 ("fetch: suffix allow-list matches evilexample.com", "shared/io/fetch.py", "host.endswith(h.lower())", "host.endswith(h.lower().lstrip('.'))"),
 ("fetch: allow-list ignored", "shared/io/fetch.py", "        if not web:\n            return True", "        if True:\n            return True"),
 ("fetch: no redirect cap", "shared/io/fetch.py", "range(self.policy.max_redirects + 1)", "range(50)"),
 ("fetch: redirects not re-vetted", "shared/io/fetch.py", "            key = self.vet(url)\n", "            key = self.vet(url) if _ == 0 else (urlsplit(url).scheme, urlsplit(url).hostname or '', urlsplit(url).port or 80, self.resolver(urlsplit(url).hostname or '', 80)[0])\n"),
 ("fetch: a kept connection used without vetting the URL", "shared/io/fetch.py", "            key = self.vet(url)\n", "            key = next(iter(self._idle), None) or self.vet(url)\n"),
 ("fetch: a kept connection shared across hosts", "shared/io/fetch.py", "            kept = self._take(key)\n", "            kept = self._take(next((k for k in self._idle if k[3] == key[3]), key))\n"),
 ("assemble: gs:// images copied from any bucket", "shared/app/assemble.py", "            if not reader.fetcher.policy.bucket_allowed(parts.netloc):", "            if False:"),
 ("assemble: images read from the outputs' own buckets", "shared/app/assemble.py", "exported_from = tuple(sorted({b for b, _ in inputs if b}))", "exported_from = tuple(sorted({b for b, _ in inputs if b} | {'gtcoco-test-out'}))"),
 ("fetch: no TLS verification", "shared/io/fetch.py", 'cert_reqs="CERT_REQUIRED"', 'cert_reqs="CERT_NONE"'),
 ("fetch: no TLS host name check", "shared/io/fetch.py", "assert_hostname=host,", "assert_hostname=False,"),
 ("fetch: no wall-clock watchdog", "shared/io/fetch.py", "    def _fire(self) -> None:\n", "    def _fire(self) -> None:\n        return\n"),
 ("fetch: gs:// any bucket", "shared/io/fetch.py", "return bucket in self.buckets", "return True"),
 ("fetch: credentials in URLs allowed", "shared/io/fetch.py", "        if parts.username or parts.password:", "        if False:"),
 ("fetch: any scheme", "shared/io/fetch.py", "if scheme not in self.policy.schemes:", "if scheme not in self.policy.schemes | {'http', 'ftp', 'file'}:"),
 ("fetch: local files outside the CLI", "shared/io/fetch.py", '            raise refused(url, "local files are read only from the command line")', '            return iter([open(parts.path, "rb").read()])'),
 ("fetch: no size cap", "shared/io/fetch.py", "if total > self.policy.max_bytes:", "if False:"),
 ("runtime: gs:// allow-list widened to every bucket", "shared/app/runtime.py", "    allowed = {config.input_bucket, *buckets}", "    allowed = {config.input_bucket, *buckets, 'shared-masks', 'someone-else', 'other', 'gtcoco-test-denied'}"),
 # SPEC §6
 ("batches: no size check before reading in chunks", "shared/gtstudio/batches.py", "    if source.size > limits.max_json_bytes:\n        raise TooLargeError(\n            \"json_too_large\", f\"JSON is", "    if False:\n        raise TooLargeError(\n            \"json_too_large\", f\"JSON is"),
 ("jsonio: a streamed job's depth and surrogates never checked", "shared/jsonio.py", r'        if "\\u" in raw or raw.count("[") + raw.count("{") >= max_depth:', "        if False:"),
 ("jsonio: bytes read in chunks not counted", "shared/jsonio.py", "            if self._read > self._max_bytes:", "            if False:"),
 ("backfill: exports converted at their generation enqueued again", "shared/app/backfill.py", "        if pipeline.is_current(ref):", "        if False:"),
 ("queue: a repeated task name fails the backfill", "shared/io/storage.py", "    except exceptions.AlreadyExists:\n        return False\n", ""),
 ("pipeline: own outputs (metadata) processed", "shared/app/pipeline.py", "    if metadata and metadata.get(OUTPUT_MARKER):", "    if False:"),
 ("pipeline: output names processed", "shared/app/pipeline.py", "    if layout.is_output_name(name):", "    if False:"),
 ("pipeline: stale generation not skipped", "shared/app/pipeline.py", "if live.generation != ref.generation:", "if False:"),
 ("pipeline: no early duplicate check", "shared/app/pipeline.py", "and _generations(sources).items() <= _generations(found.sources).items()", "and False"),
 ("pipeline: no duplicate check under the lease", "shared/app/pipeline.py", "        if found is not None and ours and ours == _generations(found.sources):\n", "        if False:\n"),
 ("pipeline: older sources not stopped under the lease", "shared/app/pipeline.py", "        found = self._marker(place)\n        if found is not None and older(sources, found.sources):", "        found = self._marker(place)\n        if False:"),
 ("pipeline: old report kept while writing", "shared/app/pipeline.py", "            for name in (place.report, place.error):\n                self.out.delete(name)\n", ""),
 ("pipeline: leftovers of the last run kept", "shared/app/pipeline.py", "                if name not in keep:", "                if False:"),
 ("persist: report written first", "shared/app/persist.py", "        for file in files:\n            self._submit(file, done, slot=True)", "        if last is not None:\n            self._submit(last, None, slot=True)\n            last = None\n        for file in files:\n            self._submit(file, done, slot=True)"),
 ("pipeline: report before the writes end", "shared/app/pipeline.py", "        writer.drain()\n        return result, writer.written", "        return result, writer.written"),
 ("persist: a job's report before its files", "shared/app/persist.py", "        for file in files:\n            self._submit(file, done, slot=True)", "        if last is not None:\n            self._submit(last, None, slot=True)\n        last = None\n        for file in files:\n            self._submit(file, done, slot=True)"),
 ("persist: a job's report despite a failed file", "shared/app/persist.py", "ready = left[0] == 0 and ok and self._error is None", "ready = left[0] == 0"),
 ("persist: failed writes not raised", "shared/app/persist.py", "        if error is not None:\n            raise error", "        if False:\n            raise error"),
 ("persist: failed writes counted as written", "shared/app/persist.py", "                elif error is None:\n                    self.written.add(file[0])", "                if True:\n                    self.written.add(file[0])"),
 ("batches: a broken batch half converted", "shared/gtstudio/batches.py", "        except NotStreamable:\n            pass", "        except NotStreamable:\n            return Document(is_batch=True)"),
 ("registry: cached ids kept across inputs", "shared/app/pipeline.py", "        self.converter.registry.forget()  # ids cached for this input only\n", ""),
 ("pipeline: lease without precondition", "shared/app/pipeline.py", '"application/json", if_generation_match=0', '"application/json", if_generation_match=None'),
 ("pipeline: live lease ignored", "shared/app/pipeline.py", "live = isinstance(expires, (int, float)) and expires > self.clock()", "live = False"),
 ("pipeline: expired lease never taken over", "shared/app/pipeline.py", "            with contextlib.suppress(PreconditionFailed, NotFound):\n                self.out.delete(name, if_generation_match=held.generation)", "            raise TransientError('held')"),
 ("pipeline: newer lease holder not respected", "shared/app/pipeline.py", "            if older(sources, held.sources):", "            if False:"),
 ("pipeline: no input size limit", "shared/app/pipeline.py", "        if source.size > limit:", "        if False:"),
 ("pipeline: no declared size limit", "shared/app/pipeline.py", "        if ref.size is not None and ref.size > limit:", "        if False:"),
 ("pipeline: scaled mask unchecked", "shared/app/convert.py", "if mask is not None and size.width * size.height > limits.max_mask_pixels:", "if False:"),
 ("pipeline: names too long not caught", "shared/app/pipeline.py", "        if not layout.fits(place.prefix, _LONGEST_BATCH_FILE):", "        if False:"),
 ("layout: leading dot not encoded", "shared/app/layout.py", "not (i == 0 and byte == ord(\".\"))", "True"),
 ("layout: @ not encoded", "shared/app/layout.py", "0123456789-_.\")", "0123456789-_.@\")"),
 ("layout: / not encoded", "shared/app/layout.py", "0123456789-_.\")", "0123456789-_./\")"),
 ("layout: repeated reference ids share a folder", "shared/app/layout.py", 'return f"{encoded}~{position}" if repeated else encoded', "return encoded"),
 ("service: other buckets' events processed", "shared/app/service.py", "if ref.bucket != self.config.input_bucket:", "if False:"),
 ("service: stale events processed", "shared/app/service.py", "if age is not None and age > self.config.max_event_age_s:", "if False:"),
 ("service: equal buckets allowed", "shared/app/service.py", "    if config.input_bucket == config.output_bucket:", "    if False:"),
 ("service: absurd generations accepted", "shared/app/service.py", "    if not 0 <= number <= _MAX_INT64:", "    if False:"),
 ("service: generation strings unchecked", "shared/app/service.py", "    if isinstance(value, str) and not (value.isascii() and value.isdigit() and len(value) <= 19):", "    if False:"),
 ("service: malformed event data raises", "shared/app/service.py", "            return Outcome(\"skipped\", \"\", f\"malformed event: {exc}\")", "            raise RuntimeError(exc)"),
 ("service: /process any bucket", "shared/app/service.py", "if request[\"bucket\"] != self.config.input_bucket:", "if False:"),
 ("service: input errors answered 500", "shared/app/service.py", "return exc.http_status, {\"error\": exc.as_dict()}", "return 500, {\"error\": exc.as_dict()}"),
 ("service: body size unchecked", "shared/app/service.py", "if body is None or len(body) > limit:", "if body is None:"),
 ("main: body read whole", "functions/main.py", "        if total > limit:\n            return None\n", ""),
 ("jsonio: no depth limit", "shared/jsonio.py", "        elif isinstance(node, list):\n            if depth > max_depth:", "        elif isinstance(node, list):\n            if False:"),
 ("jsonio: lone surrogates pass", "shared/jsonio.py", "        elif isinstance(node, str) and _has_surrogate(node):", "        elif False:"),
 ("jsonio: huge integers crash", "shared/jsonio.py", "    except ValueError as exc:\n        # Python refuses", "    except KeyError as exc:\n        # Python refuses"),
 ("registry: label length unbounded", "shared/io/registry.py", "        check_labels(wanted, self.limits)", "        pass"),
 ("registry: category count unbounded", "shared/io/registry.py", "if len(merged[\"categories\"]) > self.limits.max_categories:", "if False:"),
 ("coco: polygon walk unbounded", "shared/coco/builder.py", "if steps > limits.max_raster_work:", "if False:"),
 ("coco: huge frames rasterised whole", "shared/coco/builder.py", "if width * height > frame_limit:", "if False:"),
 ("raster: empty rows inside a colour mask written as matches", "shared/raster/pngwrite.py", "row[1:] - row[:-1] > max(1, _GAP_BYTES // row_bytes)", "row[1:] - row[:-1] > 10**9"),
 ("raster: colour mask batches unbounded", "shared/raster/pngwrite.py", "batch = (np.cumsum(count) - count) // _BATCH_RUNS", "batch = (np.cumsum(count) - count) // 10**12"),
 ("raster: a colour of many runs not cut into bands", "shared/raster/pngwrite.py", "    if many.size:  # and in whole rows", "    if False:  # and in whole rows"),
 ("raster: diagonal pixels split into two outlines", "shared/raster/outlines.py", "    left = (direction[pinch] + 3) % 4", "    left = (direction[pinch] + 1) % 4"),
 ("raster: outline batches after the first dropped", "shared/raster/outlines.py", "for a, b in pairwise(edges)]\n", "for a, b in pairwise(edges)][:1]\n"),
 ("raster: legend.json label not escaped", "shared/raster/regions.py", "text = labels[label] = encode_basestring(label)", "text = labels[label] = f'\"{label}\"'"),
 ("storage: 403 not classified", "shared/io/storage.py", "    except (gexc.BadRequest, gexc.Unauthorized, gexc.Forbidden) as exc:\n        raise AccessDenied", "    except (gexc.BadRequest, gexc.Unauthorized, gexc.Forbidden) as exc:\n        raise TransientError"),
 ("fetch: gs:// 404 / 403 not classified", "shared/io/fetch.py", "        except NotFound:\n            # An object", "        except KeyError:\n            # An object"),
 ("cli: one bad input stops the run", "shared/app/cli.py", "        except (GtcocoError, AccessDenied, ValueError, OSError) as exc:", "        except KeyError as exc:"),
 ("runtime: https-only setting ignored", "shared/app/runtime.py", 'schemes=frozenset({"https"} if config.fetch_https_only else {"http", "https"}),', 'schemes=frozenset({"http", "https"}),'),
 ("storage: retries ignore the configured deadline", "shared/io/storage.py", "return DEFAULT_RETRY.with_timeout(self.retry_deadline_s)", "return DEFAULT_RETRY.with_timeout(120.0)"),
 ("shards: report before every shard is done", "shared/app/pipeline.py", "        if not set(wanted) <= set(self.out.list(place / \"shards/\")):\n            return None\n", ""),
 ("shards: report written without its precondition", "shared/app/pipeline.py", "place.report, dump_json(report), \"application/json\", if_generation_match=0", "place.report, dump_json(report), \"application/json\""),
 ("shards: a stale record completes the set", "shared/app/pipeline.py", "                if found is None or _generations(found.sources) != _generations(sources):\n                    return None  # a stale record", "                if found is None:\n                    return None  # a stale record"),
 ("shards: a live fan-out does not hold its input", "shared/app/pipeline.py", "        if isinstance(expires, (int, float)) and expires > self.clock():\n            raise TransientError(\n                f\"{place.prefix} is being converted in shards", "        if False:\n            raise TransientError(\n                f\"{place.prefix} is being converted in shards"),
 ("shards: a superseded shard converts", "shared/app/pipeline.py", "        if live.generation != ref.generation:\n            raise _Superseded(f\"generation {ref.generation} is not the live {live.generation}\")\n        fan = self._read_marker(place / FANOUT)", "        fan = self._read_marker(place / FANOUT)"),
 ("shards: a shard in progress elsewhere answered done", "shared/app/pipeline.py", "                raise TransientError(f\"{exc}; this delivery is retried later\") from exc", "                return Outcome(\"duplicate\", key, str(exc))"),
 ("shards: a shard out of the plan accepted", "shared/app/pipeline.py", "        if ranges is None or not 0 <= index < len(ranges):", "        if ranges is None:"),
 ("cli: --out file accepted", "shared/app/cli.py", "Path(args.out).exists() and not Path(args.out).is_dir():", "False:"),
 # SPEC §6 on the array path: coordinates checked in bulk, the same first error
 ("arrays: coordinate range not checked in bulk", "shared/gtstudio/arrays.py", "    if not bool(np.all((points >= COORD_MIN) & (points <= COORD_MAX))):  # NaN fails too", "    if False:"),
 ("arrays: coordinate types not checked in bulk", "shared/gtstudio/arrays.py", "    if not {*map(type, xs), *map(type, ys)} <= _NUMBERS or {*map(type, names)} - {str}:", "    if False:"),
 ("shapes: a long integer coordinate overflows", "shared/gtstudio/shapes.py", "        if isinstance(value, float) and not math.isfinite(value):  # an int is finite", "        if not math.isfinite(value):"),
 ("polygons: a ring too complex is not refused in bulk", "shared/coco/polygons.py", "        if walk > limit:", "        if False:"),
 ("shapes: a long label passes the label cache", "shared/gtstudio/shapes.py", "        if type(raw_label) is str and len(raw_label) <= limits.max_label_chars", "        if type(raw_label) is str"),
 ("memo: long keys cached", "shared/memo.py", "        if len(key) <= LONGEST_KEY:", "        if True:"),
 ("memo: the cache grows without bound", "shared/memo.py", "            if len(self) >= self.maxsize:", "            if False:"),
]]


def run(only: list[str]) -> int:
    chosen = [m for m in MUTANTS if not only or any(o in m.label for o in only)]
    caught = 0
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree),
                        "HEAD"], check=True)
        env = dict(os.environ, PYTHONPATH=str(tree), NO_GCE_CHECK="true", CHECKPOINT_DISABLE="1",
                   GTCOCO_TASKS_EMULATOR=str(ROOT / ".venv-tasks" / "bin" / "gcloud-tasks-emulator"))
        try:
            # The tree unmutated must pass, or every mutant would look caught.
            baseline = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-n", "2", "--dist", "loadgroup",
                 "-p", "no:cacheprovider", "tests/shared", "tests/functions"],
                cwd=tree, env=env, capture_output=True, text=True, timeout=1800, check=False)
            if baseline.returncode != 0:
                print("the unmutated tree fails its tests; fix that first:\n" + baseline.stdout[-3000:])
                return 2
            print("baseline: the unmutated tree passes", flush=True)
            for mutant in chosen:
                target = tree / mutant.path
                text = target.read_text()
                if mutant.old not in text:
                    print(f"STALE   {mutant.label}: its guard text is gone; update the list")
                    continue
                target.write_text(text.replace(mutant.old, mutant.new, 1))
                started = time.monotonic()
                try:
                    result = subprocess.run(
                        [sys.executable, "-m", "pytest", "-x", "-q", "-n", "2", "--dist",
                         "loadgroup", "-p", "no:cacheprovider", "tests/shared", "tests/functions"],
                        cwd=tree, env=env, capture_output=True, text=True, timeout=900,
                        check=False)
                    failed = result.returncode != 0
                    first = next((line for line in result.stdout.splitlines()
                                  if line.startswith(("FAILED", "ERROR"))), "")
                except subprocess.TimeoutExpired:
                    failed, first = True, "timeout"
                finally:
                    target.write_text(text)
                caught += failed
                print(f"{'caught' if failed else 'MISSED'}  {mutant.label} "
                      f"({time.monotonic() - started:.0f}s) {first[:100]}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           check=False)
    print(f"mutants: {caught} / {len(chosen)} caught")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
