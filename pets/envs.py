"""Backends in their own Python environment: the environments, their cache and their state.

A backend whose party programs need libraries the harness's environment cannot hold
(PySyft 0.9.5 pins numpy to 1.24) declares them as data, in
:attr:`pets.api.Capabilities.requirements`. ``pets env sync <backend>`` builds a
virtual environment for it under the cache folder (:func:`cache_root`): the backend's
requirements plus the three libraries the party runtime imports (:data:`PARTY_RUNTIME`,
loosely pinned so they resolve beside the backend's pins). The harness's own ``pets``
package is not installed there: each party process gets it, and the backend's own
package, from where the harness has them (:mod:`pets.runtime.venv`), so both sides
always run the same code. An environment is named after the backend and a hash of its
requirements, the party runtime's requirements, the Python version and the ``pets``
version, and reused while that hash holds. It counts as built only once its marker file
(:data:`MARKER`) is written, after a successful install; a failed install leaves nothing
behind. See docs/environments.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pets.registry import Registry

__all__ = [
    "ENV_CACHE_VARIABLE",
    "MARKER",
    "PARTY_RUNTIME",
    "PARTY_RUNTIME_NUMPY_1",
    "EnvError",
    "EnvSpec",
    "EnvState",
    "backend_requirements",
    "cache_root",
    "env_report",
    "env_state",
    "installer",
    "known_envs",
    "sync_backends",
    "sync_env",
]

#: The environment variable that sets the cache folder of backend environments.
ENV_CACHE_VARIABLE = "PETS_ENV_CACHE"

#: What the party runtime (``pets.api``, ``pets.runtime``) imports besides the standard
#: library; loose, so that a backend's pins (``numpy<=1.24.4``) decide the versions.
PARTY_RUNTIME = ("numpy>=1.24", "pandas>=2", "pyarrow>=14")

#: What the party runtime needs instead where the backend keeps numpy below 2 (pyarrow
#: declares no numpy requirement, and pyarrow 26 and later import only beside numpy 2).
PARTY_RUNTIME_NUMPY_1 = ("numpy>=1.24", "pandas>=2", "pyarrow>=14,<26")

#: The file an environment holds once it is complete (written last, atomically).
MARKER = "pets-env.json"

_LIST_PACKAGES = (
    "import importlib.metadata as m, json, platform, sys;"
    "print(json.dumps({'python': platform.python_version(), 'prefix': sys.prefix,"
    "'packages': {d.metadata['Name']: d.version for d in m.distributions()}}))"
)


class EnvError(RuntimeError):
    """An environment could not be built, or a requirement is malformed."""


def cache_root() -> Path:
    """The folder holding the environments: ``$PETS_ENV_CACHE``, else
    ``${XDG_CACHE_HOME:-~/.cache}/pets/envs``."""
    chosen = os.environ.get(ENV_CACHE_VARIABLE)
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "pets" / "envs"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "backend"


@dataclass(frozen=True)
class EnvSpec:
    """What an environment must hold: a backend's requirements, for this Python and
    this ``pets``.

    Parameters
    ----------
    backend : str
        The backend's registered name (names the folder).
    requirements : tuple of str
        The backend's requirements, normalised (PEP 508).
    python : str
        Major and minor version of the interpreter the environment is built from.
    pets_version : str
        The harness's version.
    """

    backend: str
    requirements: tuple[str, ...]
    python: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    pets_version: str = field(default_factory=lambda: _pets_version())

    @classmethod
    def of(cls, backend: str, requirements: Sequence[str]) -> EnvSpec:
        """The spec of ``backend`` with ``requirements`` checked and normalised.

        Raises
        ------
        EnvError
            If a requirement is not a PEP 508 requirement string.
        """
        from packaging.requirements import InvalidRequirement, Requirement

        normalised = []
        for text in requirements:
            try:
                normalised.append(str(Requirement(text)))
            except InvalidRequirement as exc:
                raise EnvError(
                    f"backend {backend!r} declares an invalid requirement {text!r}: {exc}"
                ) from None
        return cls(backend, tuple(normalised))

    @property
    def party_runtime(self) -> tuple[str, ...]:
        """What the party runtime adds to the backend's requirements:
        :data:`PARTY_RUNTIME`, or :data:`PARTY_RUNTIME_NUMPY_1` where the backend's
        requirements allow no numpy 2."""
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name

        for text in self.requirements:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == "numpy" and not any(
                requirement.specifier.contains(v, prereleases=True)
                for v in ("2.0.0", "2.5.0", "3.0.0")
            ):
                return PARTY_RUNTIME_NUMPY_1
        return PARTY_RUNTIME

    @property
    def key(self) -> str:
        """A hash of everything the environment's contents depend on."""
        facts = {
            "requirements": sorted(self.requirements),
            "party_runtime": list(self.party_runtime),
            "python": self.python,
            "pets": self.pets_version,
        }
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def folder_name(self) -> str:
        """``<backend>-<key>``."""
        return f"{_slug(self.backend)}-{self.key}"

    @property
    def sync_command(self) -> str:
        """The command that builds this environment."""
        return f"pets env sync {self.backend}"


def _pets_version() -> str:
    import pets

    return str(pets.__version__)


@dataclass(frozen=True)
class EnvState:
    """Where a backend's environment is and whether it is current.

    Attributes
    ----------
    spec : EnvSpec
        What the environment must hold.
    status : str
        ``current`` (built for this spec), ``stale`` (built for other requirements, Python
        or ``pets``) or ``missing``.
    path : Path
        The folder of the current environment (or where it will be built).
    marker : Mapping
        The current environment's marker: Python version, prefix, installed packages.
    """

    spec: EnvSpec
    status: str
    path: Path
    marker: Mapping[str, Any] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        """The environment's interpreter."""
        return self.path / "bin" / "python"

    def message(self) -> str:
        """Why a cell of this backend cannot run here, naming the command that fixes it."""
        what = {
            "missing": "is not built",
            "stale": "was built for other requirements, Python or pets version",
        }.get(self.status, "is current")
        return (
            f"backend {self.spec.backend!r} runs in its own Python environment, which "
            f"{what}; run `{self.spec.sync_command}`"
        )

    def facts(self) -> dict[str, Any]:
        """The environment as a record's environment block shows it: its name, Python,
        and the versions of the party runtime's libraries and the backend's requirements
        (the marker keeps the full list)."""
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name

        wanted = {canonicalize_name(Requirement(r).name) for r in self.spec.requirements}
        wanted |= {canonicalize_name(Requirement(r).name) for r in self.spec.party_runtime}
        packages = {
            name: version
            for name, version in dict(self.marker.get("packages") or {}).items()
            if canonicalize_name(name) in wanted
        }
        return {
            "name": self.path.name,
            "python": self.marker.get("python"),
            "requirements": list(self.spec.requirements),
            "packages": dict(sorted(packages.items())),
        }


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def env_state(spec: EnvSpec, root: Path | None = None) -> EnvState:
    """The state of ``spec``'s environment in the cache folder ``root``."""
    root = cache_root() if root is None else root
    path = root / spec.folder_name
    marker = _read_marker(path)
    if marker is not None and marker.get("key") == spec.key and (path / "bin/python").exists():
        return EnvState(spec, "current", path, marker)
    others = [p for p in _folders_of(spec.backend, root) if p != path]
    return EnvState(spec, "stale" if others else "missing", path)


def _folders_of(backend: str, root: Path) -> list[Path]:
    """Complete environments of ``backend`` in ``root`` (with a marker naming it)."""
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.glob(f"{_slug(backend)}-*")):
        marker = _read_marker(folder)
        if marker is not None and marker.get("backend") == backend:
            found.append(folder)
    return found


def known_envs(root: Path | None = None) -> list[dict[str, Any]]:
    """Every complete environment in the cache folder: its marker and folder."""
    root = cache_root() if root is None else root
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        marker = _read_marker(folder)
        if marker is not None:
            out.append({**marker, "path": str(folder)})
    return out


def installer(prefer: str | None = None) -> tuple[str, str]:
    """The installer to use: ``("uv", path)`` when ``uv`` is on the PATH or beside this
    interpreter (the ``test`` extra installs it), else ``("pip", sys.executable)`` (this
    interpreter's pip, which installs into the environment with ``--python`` where it
    can). ``prefer="pip"`` chooses pip whether or not uv is there."""
    if prefer not in (None, "uv", "pip"):
        raise ValueError(f"installer must be 'uv' or 'pip', not {prefer!r}")
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if prefer == "uv" and not found:
        raise EnvError("uv is neither on the PATH nor beside this interpreter")
    return ("uv", found) if found and prefer != "pip" else ("pip", sys.executable)


def _pip_drives_other_interpreters() -> bool:
    """Whether this interpreter's pip can install into another one (``--python``, pip
    22.3 and later), which spares each environment a pip of its own."""
    from importlib import metadata

    try:
        major, minor = (int(x) for x in metadata.version("pip").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (22, 3)


@contextlib.contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sync_env(
    spec: EnvSpec,
    *,
    root: Path | None = None,
    progress: Callable[[str], None] = print,
    tool: str | None = None,
) -> tuple[EnvState, bool]:
    """Build ``spec``'s environment unless it is current; return its state and whether
    it was built.

    The environment is created, its requirements installed and the marker written last;
    on any failure the half-built folder is removed. Environments of the same backend
    built for other specs are removed once the new one is complete.

    ``tool`` chooses the installer (``"uv"`` or ``"pip"``; default: :func:`installer`).

    Raises
    ------
    EnvError
        If the environment could not be created or a requirement not installed (one
        line: the installer's first error).
    """
    root = cache_root() if root is None else root
    with _locked(root, spec.folder_name):
        state = env_state(spec, root)
        if state.status == "current":
            return state, False
        path = state.path
        shutil.rmtree(path, ignore_errors=True)  # a build that died half-way
        tool, program = installer(tool)
        wanted = (*spec.requirements, *spec.party_runtime)
        progress(f"{spec.backend}: building {path} with {tool} ({', '.join(wanted)})")
        try:
            python = path / "bin" / "python"
            if tool == "uv":
                _call([program, "venv", "--python", sys.executable, str(path)], progress)
                install = [program, "pip", "install", "--python", str(python)]
                install += ["--compile-bytecode", *wanted]  # as pip does: warm first imports
            elif _pip_drives_other_interpreters():
                _call([program, "-m", "venv", "--without-pip", str(path)], progress)
                install = [program, "-m", "pip", "--python", str(python), "install"]
                install += ["--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
                install += wanted
            else:
                _call([program, "-m", "venv", str(path)], progress)
                install = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
                install += ["--no-input", "--progress-bar", "off", *wanted]
            _call(install, progress)
            listed = subprocess.run(
                [str(python), "-I", "-c", _LIST_PACKAGES],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
            facts = json.loads(listed.stdout)
        except EnvError as exc:
            shutil.rmtree(path, ignore_errors=True)
            raise EnvError(
                f"could not build the environment of {spec.backend!r} ({tool}): {exc}"
            ) from None
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            shutil.rmtree(path, ignore_errors=True)
            raise EnvError(
                f"could not build the environment of {spec.backend!r} ({tool}): "
                f"{type(exc).__name__}: {exc}"
            ) from None
        marker = {
            "backend": spec.backend,
            "key": spec.key,
            "requirements": list(spec.requirements),
            "party_runtime": list(spec.party_runtime),
            "python_minor": spec.python,
            "pets_version": spec.pets_version,
            "installer": tool,
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **facts,
        }
        staging = path / f".{MARKER}.tmp"
        staging.write_text(json.dumps(marker, indent=1, sort_keys=True))
        os.replace(staging, path / MARKER)
        for old in _folders_of(spec.backend, root):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)
        progress(f"{spec.backend}: ready ({path.name})")
        return EnvState(spec, "current", path, marker), True


def _call(command: list[str], progress: Callable[[str], None]) -> None:
    """Run an installer step, passing its output on line by line; on failure raise
    :class:`EnvError` with its last error line."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines: list[str] = []
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.rstrip()
        if line:
            lines.append(line)
            progress(f"  {line}")
    code = process.wait()
    if code != 0:
        errors = [x for x in lines if x.lstrip().lower().startswith(("error", "×", "╰"))]
        last = (errors or lines or [f"{Path(command[0]).name} ended with code {code}"])[0]
        raise EnvError(f"exit code {code}: {last.strip()}")


def backend_requirements(
    registry: Registry, names: Sequence[str]
) -> dict[str, tuple[str, ...] | str]:
    """Each backend's declared requirements (with its default parameters), read in a
    throwaway party process of the harness's environment; a string says why a backend
    could not be described."""
    from pets.api import Capabilities
    from pets.runtime.harness import BackendDescription, PartyLauncher, describe_backends

    answers = describe_backends(PartyLauncher(), [(registry.target(n), {}) for n in names])
    out: dict[str, tuple[str, ...] | str] = {}
    for name, answer in zip(names, answers, strict=True):
        if not isinstance(answer, BackendDescription):
            out[name] = str(answer)
            continue
        try:
            out[name] = Capabilities.from_dict(answer.capabilities).requirements
        except (TypeError, ValueError) as exc:
            out[name] = f"invalid capabilities: {exc}"
    return out


def sync_backends(
    registry: Registry,
    names: Sequence[str] = (),
    *,
    root: Path | None = None,
    progress: Callable[[str], None] = print,
) -> int:
    """``pets env sync``: build or update the environment of each backend in ``names``
    (default: every registered backend that declares requirements). Returns the exit
    code: 0 when every environment is current, 1 when one could not be built or a named
    backend could not be described, 2 for an unknown name."""
    from pets.registry import UnknownBackend

    try:
        for name in names:
            registry.target(name)
    except UnknownBackend as exc:
        progress(f"pets: {exc}")
        return 2
    found = backend_requirements(registry, list(names) or registry.names())
    code = 0
    for name, requirements in found.items():
        if isinstance(requirements, str):
            if names:
                progress(f"{name}: cannot be described: {requirements}")
                code = 1
            continue
        if not requirements:
            if names:
                progress(f"{name}: runs in the harness's environment (no requirements)")
            continue
        try:
            state, built = sync_env(EnvSpec.of(name, requirements), root=root, progress=progress)
        except EnvError as exc:
            progress(f"pets: {exc}")
            code = 1
            continue
        if not built:
            progress(f"{name}: up to date ({state.path})")
    return code


def env_report(registry: Registry, *, root: Path | None = None) -> list[str]:
    """``pets env list``: one line per backend that declares requirements (its
    environment's state and folder), then environments no registered backend uses."""
    root = cache_root() if root is None else root
    found = backend_requirements(registry, registry.names())
    lines = [f"Backend environments in {root}:"]
    used = set()
    for name, requirements in found.items():
        if isinstance(requirements, str) or not requirements:
            continue
        try:
            state = env_state(EnvSpec.of(name, requirements), root)
        except EnvError as exc:
            lines.append(f"  {name:24s} invalid    {exc}")
            continue
        used.add(state.path.name)
        hint = "" if state.status == "current" else f"  (run `{state.spec.sync_command}`)"
        lines.append(f"  {name:24s} {state.status:10s} {state.path.name}{hint}")
        lines.append(f"  {'':24s} {'':10s} {', '.join(state.spec.requirements)}")
    if len(lines) == 1:
        lines.append("  (no installed backend declares requirements)")
    unused = [e for e in known_envs(root) if Path(e["path"]).name not in used]
    for env in unused:
        lines.append(f"  {env.get('backend', '?'):24s} {'unused':10s} {Path(env['path']).name}")
    return lines
