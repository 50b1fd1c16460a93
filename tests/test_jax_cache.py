"""synth-dp's JAX compilation cache: a private folder, programs kept by one process and
loaded by the next, and no measurement of the data in what is kept."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pets.backends.synth.jax_setup import CACHE_FOLDER, compilation_cache_dir
from pets.cache import private_folder

ROOT = Path(__file__).resolve().parent.parent


def _fresh(code: str, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (or the CLI, with ``args``) in a fresh interpreter whose cache
    folder is ``cache``."""
    env = {**os.environ, "PETS_CACHE": str(cache), "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-c", code, *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=ROOT)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_cache_folder_is_this_users_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("PETS_CACHE", str(tmp_path / "cache"))
    folder = compilation_cache_dir()
    assert folder == tmp_path / "cache" / CACHE_FOLDER and _mode(folder) == 0o700
    folder.chmod(0o777)  # others could plant programs: made private again
    assert private_folder(CACHE_FOLDER) == folder and _mode(folder) == 0o700
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o777)
    folder.rmdir()
    folder.symlink_to(elsewhere)  # a link could lead to a folder others write to
    with pytest.raises(PermissionError):
        private_folder(CACHE_FOLDER)
    with pytest.warns(RuntimeWarning, match="compilation cache off"):
        assert compilation_cache_dir() is None


TOY = """
import json
from pets.backends.synth.jax_setup import import_mbi
mbi = import_mbi()
import jax, jax.numpy as jnp
events = []
jax.monitoring.register_event_listener(lambda event, **kwargs: events.append(event))
total = jax.jit(lambda x: jnp.cumsum(x * 2.0))(jnp.arange(7.0))
print(json.dumps({
    "last": float(total[-1]),
    "x64": bool(jax.config.jax_enable_x64),
    "folder": jax.config.jax_compilation_cache_dir,
    "hits": events.count("/jax/compilation_cache/cache_hits"),
    "writes": events.count("/jax/compilation_cache/cache_misses"),
}))
"""


def test_a_compiled_program_is_kept_and_loaded_by_the_next_process(tmp_path):
    cache = tmp_path / "cache"
    first = json.loads(_fresh(TOY, cache).stdout)
    folder = cache / CACHE_FOLDER
    kept = sorted(p.name for p in folder.glob("*-cache"))
    assert first["folder"] == str(folder) and first["x64"] and first["last"] == 42.0
    assert first["writes"] >= 1 and first["hits"] == 0 and kept
    second = json.loads(_fresh(TOY, cache).stdout)
    assert second["hits"] >= 1 and second["writes"] == 0 and second["last"] == 42.0
    assert sorted(p.name for p in folder.glob("*-cache")) == kept


@pytest.mark.slow
def test_synth_dp_cells_reuse_programs_compiled_by_an_earlier_run(tmp_path):
    cache = tmp_path / "cache"
    cli = "import sys; from pets.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["run", "research_data_release", "--backend", "synth-dp", "--quick", "--seeds", "1"]
    args += ["--leakage", "off", "--no-progress"]
    _fresh(cli, cache, *args, "--out", str(tmp_path / "first"))
    folder = cache / CACHE_FOLDER
    kept = {p.name.removesuffix("-cache") for p in folder.glob("*-cache")}
    assert len(kept) > 10
    started = time.time_ns()
    _fresh(cli, cache, *args, "--out", str(tmp_path / "second"))
    for run in ("first", "second"):
        records = (tmp_path / run / "records.jsonl").read_text().splitlines()
        assert records and all(json.loads(r)["status"] == "ok" for r in records)
    # JAX stamps an entry's last use when it loads it: programs of the first run were
    # loaded by the second instead of compiled again
    loaded = [
        key
        for key in kept
        if int.from_bytes((folder / f"{key}-atime").read_bytes(), "little") >= started
    ]
    assert loaded


NOISY = """
import json, os, sys, zlib
import numpy as np
from pets.backends.synth.jax_setup import import_mbi
mbi = import_mbi()
import jax, jax.numpy as jnp
from pets.backends.dp.opendp_ops import zcdp_budget
from pets.backends.synth.coding import public_codings
from pets.backends.synth.mst import mst_synthesise
from pets.data import generate_cohort

measured = []
estimate = mbi.estimation.MirrorDescent.estimate
def keep(self, domain, loss_fn, *args, **kwargs):
    measured.extend(np.asarray(m.noisy_measurement, dtype=np.float64) for m in loss_fn)
    return estimate(self, domain, loss_fn, *args, **kwargs)
mbi.estimation.MirrorDescent.estimate = keep

frame = generate_cohort(2_000, seed=3)
columns = ["age", "sex", "ethnicity", "bmi", "hba1c", "t2_diabetes", "readmitted_30d"]
mst_synthesise(frame, public_codings(frame, columns), rho=zcdp_budget(1.0, 1e-6), iters=200,
               rng=np.random.default_rng(0))
folder = sys.argv[1]
def entries():
    return {f: zlib.decompress(open(os.path.join(folder, f), "rb").read())
            for f in os.listdir(folder) if f.endswith("-cache")}
def needles(arrays):  # float64 bytes of every value that is not a small whole number
    return {np.float64(v).tobytes() for a in arrays for v in a.ravel()
            if abs(v) > 1.5 and abs(v - round(v)) > 1e-6}
kept = entries()
noisy = needles(measured)
holding = [f for f, body in kept.items() if any(n in body for n in noisy)]
# control: a program that closes over concrete values carries them, and is found
secret = np.random.default_rng(7).normal(size=32) * 1000
jax.jit(lambda x: x + jnp.asarray(secret))(jnp.zeros(32)).block_until_ready()
control = [f for f, body in entries().items() if f not in kept
           and any(n in body for n in needles([secret]))]
print(json.dumps({"entries": len(kept), "noisy": len(noisy), "holding": holding,
                  "control": len(control)}))
"""


@pytest.mark.slow
def test_no_noisy_measurement_is_kept_in_the_cache(tmp_path):
    cache = tmp_path / "cache"
    found = json.loads(_fresh(NOISY, cache, str(cache / CACHE_FOLDER)).stdout)
    assert found["entries"] > 10 and found["noisy"] > 50
    assert found["control"] == 1  # the search finds values a program does carry
    assert found["holding"] == []
