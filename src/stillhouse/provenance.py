"""What a run records so its results can be reproduced: package versions and content hashes."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path

_PACKAGES = (
    "stillhouse",
    "llama-cpp-python",
    "numpy",
    "pydantic",
    "torch",
    "sentence-transformers",
    "transformers",
    "scikit-learn",
)


# stillhouse's own version (pyproject.toml says the same); here, in a module that imports no
# other stillhouse module, so a model card can record it without importing the whole package
STILLHOUSE_VERSION = "0.1.0"


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages that shape results (those installed)."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def json_sha256(value: object) -> str:
    """sha256 of a JSON-serialisable value in canonical form."""
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()
