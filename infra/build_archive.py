"""Build the deploy archive of both Cloud Functions: `main.py`, `requirements.txt` and the
modules of `shared/` that `main.py` imports, directly or through each other — nothing else.

The zip is byte-for-byte reproducible (sorted entries, fixed timestamps and modes), so its
MD5 changes exactly when the deployed code does; Terraform names the source object by that
MD5, which is what makes a code change redeploy the functions.

    python -m infra.build_archive [--out infra/build/gtcoco-source.zip]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "infra" / "build" / "gtcoco-source.zip"
PACKAGE = "shared"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


def _imported_modules(path: Path, module: str) -> set[str]:
    """Dotted names of the `shared` modules one file imports (absolute or relative)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # `from shared import x` may name a submodule as well as an attribute.
            names = [target, *(f"{target}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(n for n in names if n == PACKAGE or n.startswith(PACKAGE + "."))
    return found


def _module_file(module: str) -> Path | None:
    relative = Path(*module.split("."))
    for candidate in (ROOT / relative.with_suffix(".py"), ROOT / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def archive_files(root: Path = ROOT) -> dict[str, Path]:
    """Archive name -> source file: the import closure of `functions/main.py`."""
    files = {
        "main.py": root / "functions" / "main.py",
        "requirements.txt": root / "functions" / "requirements.txt",
    }
    pending = sorted(_imported_modules(files["main.py"], "main"))
    seen: set[str] = set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module)
        if path is None:
            continue  # an attribute imported from a package, not a module
        files[path.relative_to(root).as_posix()] = path
        parts = module.split(".")
        # Importing a submodule runs every package __init__ above it.
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        pending.extend(_imported_modules(path, module))
    return dict(sorted(files.items()))


def build_archive(files: dict[str, Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, path in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="zip to write")
    args = parser.parse_args(argv)
    files = archive_files()
    data = build_archive(files)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    print(f"{args.out}: {len(files)} files, {len(data):,} bytes, md5 {md5}")
    for name in files:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
