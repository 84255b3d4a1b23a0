"""Provenance for manifests: package versions, git state, timestamps, model fingerprint."""

from __future__ import annotations

import datetime as _dt
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "decouple",
    "mesa",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "pydantic",
    "pyyaml",
    "matplotlib",
    "SALib",
    "tqdm",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that can change results."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_state(root: Path | None = None) -> dict[str, object]:
    """``{"commit": sha or "unknown", "dirty": bool | None}`` of the project checkout."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    if commit.returncode != 0:
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def now() -> str:
    """UTC timestamp, ISO 8601."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def model_version() -> str:
    """The installed version of the ``decouple`` package (``"unknown"`` if not installed)."""
    try:
        return metadata.version("decouple")
    except metadata.PackageNotFoundError:
        return "unknown"


_FINGERPRINT: str | None = None


def model_fingerprint() -> str:
    """sha256 of the model's source (``model/*.py`` and ``model/*.yaml``), once per process.

    The git commit and dirty flag do not identify uncommitted code; this does. A batch
    records it in its manifest, checks it on resume and compares it with every worker's.
    """
    global _FINGERPRINT
    if _FINGERPRINT is None:
        import hashlib
        import importlib.util

        spec = importlib.util.find_spec("model")
        digest = hashlib.sha256()
        for loc in (spec.submodule_search_locations or []) if spec else []:
            for path in sorted(Path(loc).iterdir()):
                if path.suffix in (".py", ".yaml") and path.is_file():
                    digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        _FINGERPRINT = digest.hexdigest()
    return _FINGERPRINT
