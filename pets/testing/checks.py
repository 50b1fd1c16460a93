"""The conformance checks, one plain function each.

Every check is ``check_x(backend, toys)``: it returns None when the backend passes,
raises :class:`AssertionError` whose message says what to fix when it fails, and raises
:class:`SkipCheck` saying why when it does not apply. ``toys`` is the
:class:`~pets.testing.runs.Toybox` whose toy runs the checks share. :data:`CHECKS`
lists them in the order they run.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from pets.api import Backend, Capabilities, PetClass
from pets.runtime.codec import encode_value
from pets.tasks import TASK_KINDS
from pets.testing.runs import Toybox, ToyRun, importable_target

__all__ = [
    "CHECKS",
    "CONSTRUCTOR_SECONDS",
    "NEIGHBOURING_RELATIONS",
    "Check",
    "SkipCheck",
    "check_capabilities_are_typed_data",
    "check_constructor_does_no_work",
    "check_constructor_stores_parameters",
    "check_data_travels_through_the_session",
    "check_declared_kinds_run",
    "check_dp_audit_agrees_with_claim",
    "check_dp_claim_names_privacy_unit",
    "check_get_params_round_trips",
    "check_outputs_hold_no_identifiers",
    "check_reproducible_when_deterministic",
    "check_transcript_consistent_with_claim",
    "check_undeclared_kinds_unsupported",
]

#: A constructor slower than this (median of a few builds) does more than store.
CONSTRUCTOR_SECONDS = 0.02

#: Longest the kit's quick DP audit may take (its run count times one toy run).
QUICK_AUDIT_SECONDS = 60

#: Neighbouring relations a DP claim may name.
NEIGHBOURING_RELATIONS = ("add-remove", "substitute")

#: The identifier column scanned for in outputs.
IDENTIFIER_COLUMN = "nhs_number"


class SkipCheck(Exception):
    """A check does not apply to this backend; the message says why."""


Check = Callable[[Backend, Toybox], None]


# -- constructor ------------------------------------------------------------------------


def _changed(value: Any) -> Any:
    """A value of the same type as ``value`` that differs from it."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 0.5
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, tuple | list):
        return type(value)([*value, *value]) if value else type(value)([1])
    return 7


def _defaults(cls: type[Backend]) -> dict[str, Any]:
    return cls.param_defaults()


def check_constructor_stores_parameters(backend: Backend, toys: Toybox) -> None:
    """The constructor takes keyword-only parameters, each with a default, and stores
    each one, unchanged, under its own name."""
    cls = type(backend)
    signature = inspect.signature(cls.__init__)
    for name, p in signature.parameters.items():
        if name == "self":
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise AssertionError(
                f"{cls.__name__}.__init__ takes *{name}: list every parameter by name "
                "(keyword-only, with a default) so the harness can read and record them"
            )
        if p.kind is not p.KEYWORD_ONLY:
            raise AssertionError(
                f"{cls.__name__}.__init__ parameter {name!r} is positional: make every "
                "parameter keyword-only (put '*,' before the parameters)"
            )
        if p.default is p.empty:
            raise AssertionError(
                f"{cls.__name__}.__init__ parameter {name!r} has no default: give every "
                "parameter a default so the backend can be built by name alone"
            )
    defaults = _defaults(cls)
    for label, params in (
        ("its defaults", defaults),
        ("changed values", {k: _changed(v) for k, v in defaults.items()}),
    ):
        built = cls(**params)
        for name, value in params.items():
            if name not in getattr(built, "__dict__", {}) and not hasattr(built, name):
                raise AssertionError(
                    f"{cls.__name__}(...) built with {label} has no attribute {name!r}: store "
                    f"each parameter under its own name (self.{name} = {name})"
                )
            stored = getattr(built, name)
            if stored is not value and stored != value:
                raise AssertionError(
                    f"{cls.__name__}(...) built with {label} stores {name}={stored!r}, not the "
                    f"{value!r} it was given: store parameters unchanged and validate or "
                    "convert them where they are used (capabilities, run_party)"
                )


def check_get_params_round_trips(backend: Backend, toys: Toybox) -> None:
    """``get_params`` returns what the constructor was given, and building a backend
    from it gives the same parameters again."""
    cls = type(backend)
    defaults = _defaults(cls)
    for label, params in (
        ("its defaults", defaults),
        ("changed values", {k: _changed(v) for k, v in defaults.items()}),
    ):
        got = cls(**params).get_params()
        if set(got) != set(params) or any(
            got[k] is not v and got[k] != v for k, v in params.items()
        ):
            raise AssertionError(
                f"{cls.__name__}(...) built with {label}: get_params() returned {got!r}, not "
                f"{params!r}; get_params must return each constructor parameter as stored"
            )
        again = cls(**got).get_params()
        if again != got:
            raise AssertionError(
                f"{cls.__name__}(**get_params()) gives {again!r}, not {got!r}: rebuilding a "
                "backend from its parameters must give the same backend"
            )
    current = backend.get_params()
    if cls(**current).get_params() != current:
        raise AssertionError(
            f"the backend under test cannot be rebuilt from get_params() {current!r}"
        )


def check_constructor_does_no_work(backend: Backend, toys: Toybox) -> None:
    """The constructor creates no attributes besides its parameters and is quick: key
    generation, I/O and library set-up belong in ``run_party``."""
    cls = type(backend)
    params = set(cls.param_names())
    built = cls(**backend.get_params())
    extra = sorted(set(getattr(built, "__dict__", {})) - params)
    if extra:
        raise AssertionError(
            f"{cls.__name__}.__init__ creates attributes {extra} besides its parameters: the "
            "constructor must only store its parameters; generate keys, open files or "
            "connections and set up libraries inside run_party (each party's own process)"
        )
    times = []
    for _ in range(3):
        start = time.perf_counter()
        cls(**backend.get_params())
        times.append(time.perf_counter() - start)
    took = sorted(times)[1]
    if took > CONSTRUCTOR_SECONDS:
        raise AssertionError(
            f"{cls.__name__}(...) takes {took * 1000:.0f} ms to build (limit "
            f"{CONSTRUCTOR_SECONDS * 1000:.0f} ms): the constructor must only store its "
            "parameters; move key generation and other work into run_party"
        )


# -- capabilities and claims ---------------------------------------------------------------


def _capabilities(backend: Backend) -> Capabilities:
    try:
        caps = backend.capabilities
    except Exception as exc:
        raise AssertionError(
            f"reading {type(backend).__name__}.capabilities raised {type(exc).__name__}: "
            f"{exc}; capabilities must be computed from the parameters alone, without error"
        ) from None
    if not isinstance(caps, Capabilities):
        raise AssertionError(
            f"capabilities is a {type(caps).__name__}: return a pets.api.Capabilities"
        )
    return caps


def check_capabilities_are_typed_data(backend: Backend, toys: Toybox) -> None:
    """Capabilities are a :class:`~pets.api.Capabilities` of known task kinds and a
    :class:`~pets.api.PetClass`, and survive JSON and ``Capabilities.from_dict``."""
    caps = _capabilities(backend)
    unknown = sorted(set(caps.task_kinds) - set(TASK_KINDS))
    if not caps.task_kinds or unknown:
        raise AssertionError(
            f"Capabilities.task_kinds is {sorted(caps.task_kinds)}: name one or more of "
            f"{', '.join(sorted(TASK_KINDS))}"
        )
    if not isinstance(caps.pet_class, PetClass):
        raise AssertionError(
            f"Capabilities.pet_class is {caps.pet_class!r}: use a pets.api.PetClass member"
        )
    try:
        data = json.loads(json.dumps(caps.to_dict()))
        again = Capabilities.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise AssertionError(
            f"the capabilities do not survive JSON and Capabilities.from_dict: {exc}; use "
            "plain numbers, strings and tuples of strings in the claim"
        ) from None
    if again != caps:
        raise AssertionError(
            f"Capabilities.from_dict(to_dict()) gives {again!r}, not {caps!r}: every field "
            "must be typed data that round-trips through JSON"
        )
    version = getattr(type(backend), "api_version", None)
    if not isinstance(version, int) or isinstance(version, bool):
        raise AssertionError(
            f"{type(backend).__name__}.api_version is {version!r}: leave the class "
            "attribute inherited from pets.api.Backend, or set it to the pets.api.API_VERSION "
            "the backend was written for"
        )


def check_dp_claim_names_privacy_unit(backend: Backend, toys: Toybox) -> None:
    """A differential-privacy claim names its privacy unit and neighbouring relation, and
    a backend of PET class ``dp`` makes one."""
    caps = _capabilities(backend)
    claim = caps.claim
    if claim.epsilon is None:
        if caps.pet_class is PetClass.DP:
            raise AssertionError(
                "the PET class is dp but the claim has no epsilon: state the guarantee as "
                "Claim(epsilon=..., delta=..., privacy_unit='patient', "
                "neighbouring='add-remove')"
            )
        raise SkipCheck("the claim makes no differential-privacy guarantee (no epsilon)")
    if not (isinstance(claim.privacy_unit, str) and claim.privacy_unit.strip()):
        raise AssertionError(
            "the DP claim names no privacy unit: set Claim(privacy_unit='patient') (what one "
            "neighbouring change adds or removes)"
        )
    if claim.neighbouring not in NEIGHBOURING_RELATIONS:
        raise AssertionError(
            f"the DP claim's neighbouring relation is {claim.neighbouring!r}: set "
            f"Claim(neighbouring=...) to one of {', '.join(NEIGHBOURING_RELATIONS)}"
        )
    if claim.delta is None:
        raise AssertionError(
            "the DP claim gives no delta: set Claim(delta=0.0) for pure epsilon-DP, or the "
            "delta of an approximate guarantee"
        )


# -- toy runs ------------------------------------------------------------------------------


def _declared(backend: Backend) -> list[str]:
    return sorted(_capabilities(backend).task_kinds & set(TASK_KINDS))


def _ok_runs(backend: Backend, toys: Toybox) -> list[ToyRun]:
    """The toy runs of every declared kind that ended ``ok``; skip if none did."""
    runs = [toys.run(backend, kind) for kind in _declared(backend)]
    good = [r for r in runs if r.status == "ok"]
    if not good:
        raise SkipCheck("no declared task kind ran on its toy (see check_declared_kinds_run)")
    return good


def check_declared_kinds_run(backend: Backend, toys: Toybox) -> None:
    """Each declared task kind runs on its toy problem, through the party runtime, and
    the recipient returns that kind's output type."""
    failures = []
    for kind in _declared(backend):
        run = toys.run(backend, kind)
        if run.status != "ok":
            failures.append(f"{kind}: {run.status}: {run.message}")
    if failures:
        raise AssertionError(
            "declared task kinds failed on their toy problem; fix the party program or drop "
            "the kind from Capabilities.task_kinds: " + " | ".join(failures)
        )


def check_undeclared_kinds_unsupported(backend: Backend, toys: Toybox) -> None:
    """A task kind the capabilities do not declare ends ``unsupported``: the party
    program raises ``pets.api.UnsupportedTask`` for it."""
    undeclared = sorted(set(TASK_KINDS) - set(_declared(backend)))
    if not undeclared:
        raise SkipCheck("the backend declares every task kind")
    wrong = []
    for kind in undeclared:
        run = toys.run(backend, kind)
        if run.status != "unsupported":
            detail = f" ({run.message})" if run.message else ""
            wrong.append(f"{kind} ended {run.status}{detail}")
    if wrong:
        raise AssertionError(
            "undeclared task kinds must raise pets.api.UnsupportedTask in run_party (check "
            "context.task.kind first): " + "; ".join(wrong)
        )


def _same(a: Any, b: Any) -> bool:
    return encode_value(a) == encode_value(b)


def check_reproducible_when_deterministic(backend: Backend, toys: Toybox) -> None:
    """A backend that declares ``Capabilities(deterministic=True)`` gives the same output
    on the same toy problem every time."""
    caps = _capabilities(backend)
    if not caps.deterministic:
        raise SkipCheck(
            "the backend does not declare Capabilities(deterministic=True) (its outputs may "
            "differ between runs)"
        )
    differ = []
    for first in _ok_runs(backend, toys):
        second = toys.run(backend, first.kind, repeat=1)
        if second.status != "ok":
            differ.append(f"{first.kind}: the second run ended {second.status}: {second.message}")
        elif not _same(first.output, second.output):
            differ.append(f"{first.kind}: two runs on the same toy gave different outputs")
    if differ:
        raise AssertionError(
            "the backend declares deterministic=True but "
            + "; ".join(differ)
            + ": draw randomness from a seeded generator, or declare deterministic=False"
        )


def check_data_travels_through_the_session(backend: Backend, toys: Toybox) -> None:
    """An output that needs other parties' data is made with bytes from them, carried by
    the session: no party reads another's data by a route of its own (a file, a socket,
    a shared object)."""
    from pets.leakage.transcript import silent_input_parties

    silent = []
    for run in _ok_runs(backend, toys):
        found = silent_input_parties(run.problem, run.session)
        if found:
            silent.append(f"{run.kind}: {', '.join(found)}")
    if silent:
        raise AssertionError(
            "the output was made without a byte from the parties that hold its data ("
            + "; ".join(silent)
            + "): every party's contribution must reach others through context.send, never "
            "through files, sockets or objects outside its own scope"
        )


def check_transcript_consistent_with_claim(backend: Backend, toys: Toybox) -> None:
    """What each party received is consistent with the claim: a backend whose claim
    does not declare ``"inputs"`` leaks no other party's raw values, nor its per-cell,
    per-group or total summaries or local model, into any party's received bytes
    (transcript and intermediate exposure)."""
    from pets.leakage import EFFORT, EXPOSURE_THRESHOLD, AttackContext, intermediates
    from pets.leakage.transcript import attack

    claim = _capabilities(backend).claim
    exposed = []
    for run in _ok_runs(backend, toys):
        context = AttackContext(
            problem=run.problem,
            session=run.session,
            output=run.output,
            claim=claim,
            attackers=("A2",),
            effort=EFFORT["fast"],
            rng=np.random.default_rng(0),
        )
        for result in [*attack(context), *intermediates.attack(context)]:
            risk = result.to_dict().get("residual_risk")
            if risk is not None and risk > EXPOSURE_THRESHOLD:
                exposed.append(f"{run.kind}: {result.observer} sees {risk:.0%}")
    if exposed and "inputs" not in claim.declared_leakage:
        raise AssertionError(
            "parties received other parties' raw values or summaries ("
            + "; ".join(exposed)
            + " of the sampled values) while the claim does not declare 'inputs': encrypt, "
            "share or aggregate before sending, or declare Claim(declared_leakage=(..., "
            "'inputs')) and drop any input-privacy claim"
        )


def _identifiers(frame: Any) -> np.ndarray:
    if frame is None or not hasattr(frame, "columns") or IDENTIFIER_COLUMN not in frame.columns:
        return np.array([], dtype=np.int64)
    return np.asarray(frame[IDENTIFIER_COLUMN].to_numpy(), dtype=np.int64)


def check_outputs_hold_no_identifiers(backend: Backend, toys: Toybox) -> None:
    """The recipient's output holds no patient identifier (NHS number) it did not hold
    itself."""
    from pets.leakage.transcript import encodings

    if "identifiers" in _capabilities(backend).claim.declared_leakage:
        raise SkipCheck(
            "the claim declares 'identifiers': the backend admits its output may hold them"
        )
    found = []
    for run in _ok_runs(backend, toys):
        data = run.problem.party_data
        own = set(_identifiers(data.get(run.problem.task.recipient)).tolist())
        others = {
            int(i)
            for name, frame in data.items()
            if name != run.problem.task.recipient
            for i in _identifiers(frame).tolist()
        } - own
        if not others:
            continue
        payload = encode_value(run.output)
        hits = sum(1 for i in others if any(p in payload for p in encodings(i)[:3]))
        if hits:
            found.append(f"{run.kind}: {hits} of {len(others)}")
    if found:
        raise AssertionError(
            "the output holds NHS numbers of other parties' patients ("
            + "; ".join(found)
            + "): never release identifiers; return aggregates, models or de-identified rows"
        )


def check_dp_audit_agrees_with_claim(backend: Backend, toys: Toybox) -> None:
    """A quick DP audit (epsilon lower bound on neighbouring toy inputs) does not
    contradict the claimed epsilon."""
    from pets.leakage import EFFORT, AttackContext
    from pets.leakage.dp_audit import AUDITED_KINDS, MIN_TRIALS, attack

    claim = _capabilities(backend).claim
    if claim.epsilon is None:
        raise SkipCheck("the claim makes no differential-privacy guarantee (no epsilon)")
    kinds = [k for k in _declared(backend) if k in AUDITED_KINDS]
    if not kinds:
        raise SkipCheck(
            f"the quick audit covers {', '.join(sorted(AUDITED_KINDS))} tasks; this backend "
            f"serves {', '.join(_declared(backend))} (auditing a model or a synthetic table "
            "is not built)"
        )
    run = toys.run(backend, kinds[0])
    if run.status != "ok":
        raise SkipCheck(f"the {kinds[0]} toy did not run (see check_declared_kinds_run)")
    rerun = _rerun_oracle(backend, toys, kinds[0])
    started = time.perf_counter()
    rerun(run.problem)
    one_run = time.perf_counter() - started
    if one_run * MIN_TRIALS > QUICK_AUDIT_SECONDS:
        # the kit's quick check only: a cell's audit is budgeted by runs, never by time
        raise SkipCheck(
            f"one {kinds[0]} toy run takes {one_run:.1f} s: the quick audit's {MIN_TRIALS} "
            f"runs would take over {QUICK_AUDIT_SECONDS} s (a cell audits it with "
            "leakage=fast or full)"
        )
    effort = replace(EFFORT["fast"], audit_trials=MIN_TRIALS)
    context = AttackContext(
        problem=run.problem,
        session=run.session,
        output=run.output,
        claim=claim,
        attackers=("A3",),
        effort=effort,
        rng=np.random.default_rng(0),
        rerun=rerun,
    )
    (result,) = attack(context)
    extra = result.extra
    if extra.get("skipped"):
        raise SkipCheck(f"audit not run: {result.note}")
    if extra.get("claim_contradicted"):
        lower = extra["epsilon_lower"]
        raise AssertionError(
            f"the DP audit shows epsilon >= {lower:.2f} (confidence {extra['confidence']:.0%}) "
            f"on {kinds[0]} toy runs, above the claimed {claim.epsilon:g}: calibrate the noise "
            "to the sensitivity of every released statistic and split the budget across "
            "them, or claim the epsilon the mechanism gives"
        )
    if not math.isfinite(float(extra.get("epsilon_lower", 0.0))):
        raise AssertionError("the DP audit found an unbounded epsilon: add noise to every release")


def _rerun_oracle(backend: Backend, toys: Toybox, kind: str) -> Any:
    """Runs of the same backend on the audit's neighbouring problems (one runner, so
    helper parties are described once)."""
    from pets.leakage import make_rerun
    from pets.runtime.harness import ProtocolRunner

    if not type(backend).runs_parties():
        return make_rerun(lambda: type(backend)(**backend.get_params()))
    return ProtocolRunner(
        toys.launcher,
        importable_target(backend),
        backend.get_params(),
        output_type=TASK_KINDS[kind].output_type,
        sockets=backend.capabilities.sockets,
        timeout_s=toys.timeout_s,
    )


#: Every check, in the order :func:`~pets.testing.check_backend` runs them.
CHECKS: tuple[Check, ...] = (
    check_constructor_stores_parameters,
    check_get_params_round_trips,
    check_constructor_does_no_work,
    check_capabilities_are_typed_data,
    check_dp_claim_names_privacy_unit,
    check_declared_kinds_run,
    check_undeclared_kinds_unsupported,
    check_reproducible_when_deterministic,
    check_data_travels_through_the_session,
    check_transcript_consistent_with_claim,
    check_outputs_hold_no_identifiers,
    check_dp_audit_agrees_with_claim,
)
