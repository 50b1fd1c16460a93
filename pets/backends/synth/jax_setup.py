"""JAX for ``synth-dp``: on the CPU, in 64-bit floats, with a persistent compilation
cache.

Each cell's custodian runs in a fresh process, so without a cache every synthesis
compiled all of private-pgm's programs again (most of a synth-dp cell's time).
:func:`import_mbi` points JAX's persistent compilation cache at
``$PETS_CACHE/jax`` (default ``~/.cache/pets-sandbox/jax``, a folder only this user can
enter), so a program compiled in one cell is loaded from disk in the next cell and the
next run.

What the cache holds: compiled programs, keyed by a hash of the program, the compile
options and the JAX and jaxlib versions. private-pgm passes the noisy measurements to
its programs as arguments, not as constants, so they are not in the cache; what a
program's shapes carry (column domain sizes after rare codes were merged, which pairs
of columns the private spanning tree chose) is decided from the noisy measurements
alone, post-processing covered by the release's claim. No exact count reaches JAX.

JAX runs whatever is in its cache: anyone who can write to the folder can run code in
the synthesising process, so :func:`pets.cache.private_folder` refuses a folder that
is not this user's own, and then the cache is off.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType

from pets.cache import private_folder

__all__ = ["CACHE_FOLDER", "CACHE_MAX_BYTES", "compilation_cache_dir", "import_mbi"]

#: The cache folder's name under :func:`pets.cache.cache_dir`.
CACHE_FOLDER = "jax"

#: Past this size the least recently used programs are removed from the cache.
CACHE_MAX_BYTES = 256 * 2**20


def compilation_cache_dir() -> Path | None:
    """The compilation cache folder, made if missing; None (with a warning) when it
    cannot be made or is not this user's own."""
    try:
        return private_folder(CACHE_FOLDER)
    except OSError as exc:
        warnings.warn(f"JAX compilation cache off: {exc}", RuntimeWarning, stacklevel=2)
        return None


def import_mbi() -> ModuleType:
    """Import ``mbi`` with JAX on the CPU in 64-bit floats and the persistent
    compilation cache in :func:`compilation_cache_dir`.

    Called from :meth:`~pets.backends.synth.mst.SynthDP.publish`, so JAX is imported
    only in the custodian's party process, never in the fork server that preloads the
    backend's module nor in the harness.
    """
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_enable_x64", True)
    folder = compilation_cache_dir()
    if folder is None:
        jax.config.update("jax_enable_compilation_cache", False)
    else:
        jax.config.update("jax_enable_compilation_cache", True)
        jax.config.update("jax_compilation_cache_dir", str(folder))
        # most of private-pgm's programs compile in well under JAX's default 1 s
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
    with warnings.catch_warnings():
        # mbi advises against the cache for sweeps; measured here, it pays (release.md)
        warnings.filterwarnings("ignore", "JAX persistent compilation cache is enabled")
        import mbi
    return mbi
