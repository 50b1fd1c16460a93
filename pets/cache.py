"""The harness's cache folder: what is kept between runs on this machine for this user.

It holds the conformance kit's verdicts (``verdicts/``, :mod:`pets.testing.verdicts`),
the programs JAX compiled for ``synth-dp`` (``jax/``,
:mod:`pets.backends.synth.jax_setup`) and the seconds each cell took (``cell_times/``,
:mod:`pets.schedule`, by a hash of the cell's work). Nothing in it is data: no rows,
identifiers or keys. ``$PETS_CACHE`` moves it (default ``~/.cache/pets-sandbox``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_dir", "private_folder"]

#: Environment variable naming the cache folder.
CACHE_ENV = "PETS_CACHE"


def cache_dir() -> Path:
    """The cache folder: ``$PETS_CACHE``, else ``~/.cache/pets-sandbox``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "pets-sandbox"


def private_folder(name: str) -> Path:
    """Return ``cache_dir() / name``, made if missing, as a folder only this user can
    enter (mode 0700).

    Raises
    ------
    PermissionError
        If the path is a symbolic link, not a folder, or belongs to another user: what
        another user can write there could change what this user's processes run.
    OSError
        If the folder cannot be made.
    """
    path = cache_dir() / name
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise PermissionError(f"{path} is not a folder of this user's own")
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path
