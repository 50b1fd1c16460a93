"""Run one cell in this process: ``python -m pets.worker SPEC.json OUT.json``.

The runner starts one worker process per cell. A backend that declares requirements
(``Capabilities.requirements``) has its party processes started under its own virtual
environment (:mod:`pets.envs`, :mod:`pets.runtime.venv`); the worker stays in the
harness's. The worker rebuilds the cell's data from the
card, size and seed, runs the backend inside a fresh :class:`~pets.session.Session`,
and has the harness score it: accuracy against the plaintext reference, cost from the
session and the process, leakage from attacks on what each party observed. It writes
one record as JSON to ``OUT.json``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from pets.cell_spec import CellSpec, seal_result
from pets.masking import redact
from pets.network import modelled_costs
from pets.records import Record, write_atomic

__all__ = [
    "CellSpec",
    "cell_process",
    "environment",
    "execute_cell",
    "main",
    "redact",
    "unsupported_message",
]


_PACKAGES = ("pets-sandbox", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy")


def environment(extra_packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Return the facts needed to reproduce a record: Python, platform, CPU, package
    versions and the git commit of the source checkout, if any."""
    versions = {}
    for name in (*_PACKAGES, *extra_packages):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git_commit": _git_commit(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _reset_peak_rss() -> bool:
    """Reset this process's peak resident set size (Linux); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak RSS of this process since the last reset, plus the largest child, in MiB."""
    own = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                own = int(line.split()[1]) / 1024
    except OSError:
        pass
    if own is None:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(own, child)


def unsupported_message(backend: str, task_kinds: frozenset[str], kind: str) -> str:
    """The message of a cell whose backend does not serve the scenario's task kind."""
    return f"{backend} serves {', '.join(sorted(task_kinds))}, not {kind}"


def execute_cell(spec: CellSpec | Mapping[str, Any]) -> Record:
    """Run one cell and return its record; never raises for a backend's fault.

    A backend with party programs (:meth:`~pets.api.Backend.run_party`) never runs in
    this process: a throwaway party process describes it, and each party of the run is a
    process of its own that holds only its data (``isolation: process``). A backend
    written in the one-process prototyping style (``run``) runs here, and its record says
    ``isolation: api``.
    """
    from pets.api import Capabilities
    from pets.cell_server import forked_from_server
    from pets.processes import refuse_inspection
    from pets.runtime.harness import (
        PartyLauncher,
        PartyProgramError,
        ProtocolRunner,
        describe_backend,
    )
    from pets.scenarios import build_problem
    from pets.tasks import TASK_KINDS
    from pets.testing.verdicts import has_passing_verdict

    refuse_inspection()  # party processes must not read this process's memory
    if not isinstance(spec, CellSpec):
        spec = CellSpec.from_dict(spec)
    target = spec.target
    # the party processes' fork server imports its preload (about 0.4 s) while this
    # process reads the card and builds the cell's data
    launcher = PartyLauncher(preload=[target.split(":", 1)[0]])
    launcher.warm_up()
    params = dict(spec.params)
    base = {
        "scenario": spec.scenario,
        "backend": spec.backend,
        "params": params,
        "size": spec.size,
        "seed": spec.seed,
        "repeat": spec.repeat,
        "card_hash": spec.card_hash,
        "key": spec.key,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": {**environment(), "cell_start": "warm" if forked_from_server() else "cold"},
    }

    def failed(status: str, message: str, **extra: Any) -> Record:
        return Record(status=status, error=redact(message)[:4000], **base, **extra)

    scenario = _scenario(spec)
    base["kind"] = scenario.kind
    kind = TASK_KINDS[scenario.kind]
    problem = build_problem(scenario, spec.size, spec.seed)
    try:
        description = describe_backend(launcher, target, params, problem.task)
    except PartyProgramError as exc:
        return failed(exc.status, f"{spec.backend!r} could not be built: {exc}")
    if description.unknown:
        return failed(
            "failed",
            f"backend {spec.backend!r} has no parameter {description.unknown[0]!r}; "
            f"parameters: {', '.join(description.param_names) or '(none)'}",
        )
    try:
        capabilities = Capabilities.from_dict(description.capabilities)
    except (TypeError, ValueError) as exc:
        return failed("failed", f"{spec.backend!r} declared invalid capabilities: {exc}")
    base["pet_class"] = capabilities.pet_class.value
    base["deterministic"] = capabilities.deterministic
    base["unseeded_randomness"] = list(capabilities.unseeded_randomness)
    base["api_version"] = description.api_version
    base["verified"] = has_passing_verdict(target, description.params)
    if scenario.kind not in capabilities.task_kinds:
        return failed(
            "unsupported",
            unsupported_message(spec.backend, capabilities.task_kinds, scenario.kind),
        )
    if capabilities.requirements:
        if not description.runs_parties:
            return failed(
                "unsupported",
                f"{spec.backend!r} declares requirements for an environment of its own "
                "but no party programs (run_party); only party programs run there",
            )
        launcher, refusal = _own_environment(spec, target, capabilities.requirements, base)
        if refusal is not None:
            return failed(*refusal)
    if not description.runs_parties:
        return _execute_in_process(spec, base, scenario, problem, capabilities, failed)
    base["isolation"] = "process"
    runner = ProtocolRunner(
        launcher,
        target,
        params,
        output_type=kind.output_type,
        sockets=capabilities.sockets,
        helpers=(problem.task, description.helpers),
    )
    try:
        run = runner.run(problem.task, problem.party_data)
    except PartyProgramError as exc:
        prefix = "" if exc.party is None else f"party {exc.party!r}: "
        return failed(exc.status, prefix + str(exc))
    cost = _cost(spec, run.wall_s, run.cpu_s, run.peak_rss_mb, run.session)
    cost["party_startup_s"] = run.startup_s
    cost["party_load_s"] = run.load_s
    cost["by_party"] = run.party_costs
    return _score(
        spec,
        base,
        scenario,
        problem,
        capabilities,
        run.output,
        run.session,
        cost,
        runner,
        failed,
    )


def _own_environment(
    spec: CellSpec, target: str, requirements: tuple[str, ...], base: dict[str, Any]
) -> tuple[Any, tuple[str, str] | None]:
    """The launcher of a backend that runs in its own environment, or why the cell
    cannot run (``unsupported`` naming ``pets env sync`` when the environment is missing
    or stale). The record's environment block gets the party environment's facts."""
    from pets.envs import EnvError, EnvSpec, env_state
    from pets.runtime.venv import EnvPartyLauncher

    try:
        env_spec = EnvSpec.of(spec.backend, requirements)
    except EnvError as exc:
        return None, ("failed", str(exc))
    state = env_state(env_spec)
    if state.status != "current":
        return None, ("unsupported", state.message())
    base["environment"]["party_environment"] = state.facts()
    return EnvPartyLauncher(state.python, target), None


def _scenario(spec: CellSpec) -> Any:
    """The cell's card from the text the runner read once (``card_text``), checked
    against its hash, so an edit to the file during a run changes no later cell."""
    import hashlib

    from pets.scenarios import load_scenario

    text = spec.card_text
    if not text:
        return load_scenario(spec.card)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if spec.card_hash and digest != spec.card_hash:
        raise ValueError("the card text handed to the worker does not match its hash")
    return load_scenario(spec.card, text=text)


def _execute_in_process(
    spec: CellSpec,
    base: dict[str, Any],
    scenario: Any,
    problem: Any,
    capabilities: Any,
    failed: Any,
) -> Record:
    """The prototyping style: the backend's ``run`` acts as every party in this process."""
    from pets.api import PartyFailure, UnsupportedTask
    from pets.leakage import make_rerun
    from pets.registry import load_target
    from pets.session import PartyAccessError, Session

    base["isolation"] = "api"
    backend_cls = load_target(spec.target, spec.backend)
    params = dict(spec.params)
    backend = backend_cls(**params)
    session = Session(problem.task.parties, problem.party_data)
    _reset_peak_rss()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        output = backend.run(problem.task, session)
    except UnsupportedTask as exc:
        return failed("unsupported", str(exc))
    except PartyFailure as exc:
        return failed("party_failed", str(exc))
    except PartyAccessError as exc:
        return failed("failed", f"party isolation violated: {exc}")
    except Exception as exc:  # the backend's fault becomes the record's message
        return failed("failed", _describe(exc))
    wall = time.perf_counter() - wall0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (time.process_time() - cpu0) + (
        children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
    )
    cost = _cost(spec, wall, cpu, _peak_rss_mb(), session)
    rerun = make_rerun(lambda: backend_cls(**params))
    return _score(
        spec,
        base,
        scenario,
        problem,
        capabilities,
        output,
        session,
        cost,
        rerun,
        failed,
    )


def _cost(spec: CellSpec, wall: float, cpu: float, peak: float, session: Any) -> dict[str, Any]:
    meter = session.meter()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": peak,
        "bytes_total": meter.bytes_total,
        "bytes_by_party": meter.bytes_by_party,
        "messages": meter.messages,
        "rounds": meter.rounds,
        "rounds_by_party": meter.rounds_by_party,
        "phases": session.phase_times(),
        "network": modelled_costs(wall, meter.rounds, meter.bytes_by_party, spec.network),
    }


def _score(
    spec: CellSpec,
    base: dict[str, Any],
    scenario: Any,
    problem: Any,
    capabilities: Any,
    output: Any,
    session: Any,
    cost: dict[str, Any],
    rerun: Any,
    failed: Any,
) -> Record:
    """The harness's verdict on a finished run: accuracy, then leakage."""
    from pets.leakage import evaluate_leakage
    from pets.tasks import TASK_KINDS, withheld_reasons

    kind = TASK_KINDS[scenario.kind]
    if not isinstance(output, kind.output_type):
        return failed(
            "failed",
            f"{spec.backend} returned {type(output).__name__}; a {scenario.kind} task "
            f"must return {kind.output_type.__name__}",
            cost=cost,
        )
    try:
        reference = kind.reference(problem)
        accuracy = kind.score(output, reference, problem).to_dict()
        withheld = withheld_reasons(output, problem)
        if withheld:
            accuracy["withheld"] = withheld
    except Exception as exc:
        return failed("failed", f"output could not be scored: {_describe(exc)}", cost=cost)
    leakage = evaluate_leakage(
        problem,
        session,
        capabilities,
        output=output,
        rerun=rerun,
        attackers=scenario.attackers,
        mode=spec.leakage,
        seed=spec.seed,
    )
    return Record(status="ok", accuracy=accuracy, cost=cost, leakage=leakage, **base)


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def main(argv: list[str] | None = None, key: bytes = b"") -> int:
    """Run the cell of ``SPEC.json`` and write its record to ``OUT.json``, sealed under
    ``key`` (:func:`pets.cell_spec.seal_result`)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m pets.worker SPEC.json OUT.json", file=sys.stderr)
        return 2
    record = execute_cell(CellSpec.from_json(Path(args[0]).read_text()))
    write_atomic(Path(args[1]), seal_result(record.to_dict(), key))
    return 0


def cell_process(argv: list[str] | None = None, key: bytes = b"") -> None:  # pragma: no cover
    """Entry point of a cell's worker process: :func:`main`, then end the cell.

    ``key`` seals the record, so the runner accepts no result file a party wrote.

    The worker is a child subreaper, so whatever a backend forks stays under it; once
    the record is written, everything under it is killed and the process ends at once,
    so a thread a backend left running cannot hold the cell open past its result.
    """
    import multiprocessing.util

    from pets.containment import CELL_VARIABLE, become_subreaper, stop_cell

    become_subreaper()
    code = 1
    try:
        code = main(argv, key)
    except BaseException:  # the runner records the stderr tail (masked)
        traceback.print_exc()
    finally:
        stop_cell(os.environ.get(CELL_VARIABLE), os.getpid(), keep_root=True)
        with contextlib.suppress(OSError):  # the fork server's socket folder
            shutil.rmtree(multiprocessing.util.get_temp_dir(), ignore_errors=True)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


if __name__ == "__main__":
    cell_process()
