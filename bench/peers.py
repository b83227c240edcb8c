"""The virtualenvs the systems run in: taskhub's own, and one per peer under bench/.peers/.

ipyparallel and taskhub both install an `ipcluster` command, and dask pins its own
dependencies, so each peer gets a venv of its own, created on first use with
`python3 -m venv` and `pip install` (a stamp file marks it complete).
"""
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = REPO / "bench" / ".peers"
PACKAGES = {"ipp": ["ipyparallel", "numpy"], "dask": ["dask[distributed]", "numpy"],
            "ray": ["ray>=2,<3", "numpy"]}
INSTALL_TIMEOUT = 900


class PeerSetupError(Exception):
    """A peer's virtualenv could not be made or installed."""


def python_for(venv):
    """The interpreter of `venv`: "main" is taskhub's .venv; others are peer venvs."""
    if venv == "main":
        main = REPO / ".venv" / "bin" / "python"
        return str(main) if main.exists() else sys.executable
    return str(ensure_peer_venv(venv))


def ensure_peer_venv(name):
    """bench/.peers/<name>/bin/python, creating the venv and installing it if need be."""
    where = PEERS_DIR / name
    python, stamp = where / "bin" / "python", where / ".installed"
    if stamp.exists():
        return python
    packages = PACKAGES[name]
    sys.stderr.write(f"bench: creating {where} (pip install {' '.join(packages)}); "
                     "this happens once\n")
    shutil.rmtree(where, ignore_errors=True)  # a half-made venv from an interrupted run
    _run([shutil.which("python3") or sys.executable, "-m", "venv", str(where)])
    _run([str(python), "-m", "pip", "install", "--quiet", *packages])
    stamp.write_text(" ".join(packages) + "\n")
    return python


def _run(cmd):
    try:
        subprocess.run(cmd, check=True, timeout=INSTALL_TIMEOUT, stdout=sys.stderr)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        raise PeerSetupError(f"{' '.join(cmd[:4])} … failed: {e}") from None
