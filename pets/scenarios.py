"""Scenario cards: loading, validation, and turning a card into data for one cell.

A card is a TOML file ``scenarios/<id>.toml`` with a story beside it (``<id>.md``).
Every field is checked on load; a wrong one fails with a :class:`~pets.tasks.CardError`
naming the file, the field and what is allowed. See ``docs/scenario-cards.md``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from pets.expressions import select_rows
from pets.network import NetworkProfile
from pets.registry import unknown_name_message
from pets.tasks import (
    TASK_KINDS,
    CardError,
    CardTable,
    PartyRole,
    Problem,
    ScenarioData,
    freeze,
)

__all__ = [
    "ATTACKER_MODELS",
    "CARD_SCHEMA",
    "DATA_SOURCES",
    "REQUIREMENT_BOUNDS",
    "SPLIT_METHODS",
    "DataSpec",
    "Requirements",
    "Scenario",
    "Sweep",
    "backend_seed",
    "build_problem",
    "check_sizes",
    "default_scenario_dir",
    "find_scenarios",
    "load_scenario",
]

#: Version of the card format this code reads.
CARD_SCHEMA = 1
ATTACKER_MODELS = ("A0", "A1", "A2", "A3")
DATA_SOURCES = ("cohort", "breast_cancer", "diabetes")
SPLIT_METHODS = ("column", "catchment", "overlap", "whole")
ROLES = (
    "data_holder",
    "analyst",
    "aggregator",
    "provider",
    "supplier",
    "custodian",
    "researcher",
)


@dataclass(frozen=True)
class DataSpec:
    """The ``[data]`` table: source, sizes, population filter, held-out fraction and split
    among parties. ``size`` counts patients generated, before the filter; ``sizes``, if
    the card lists them, are the patients of a size sweep (one cell per size)."""

    source: str
    size: int
    quick_size: int
    holdout: float
    split: Mapping[str, Any]
    filter: str = ""
    sizes: tuple[int, ...] = ()

    def cell_sizes(
        self, size: int | None = None, sizes: Sequence[int] | None = None, quick: bool = False
    ) -> tuple[int, ...]:
        """The patients of this card's cells in a plan: ``sizes`` if given, else
        ``size``, else the quick size with ``quick``, else the card's ``sizes`` sweep,
        else its ``size``."""
        if sizes:
            return tuple(sizes)
        if size is not None:
            return (size,)
        if quick:
            return (self.quick_size,)
        return self.sizes or (self.size,)


@dataclass(frozen=True)
class Requirements:
    """The ``[requirements]`` table: what the scenario needs from a backend.

    Every field is optional; an absent one is not checked. The report says which
    backends meet every stated requirement and which miss which.

    Attributes
    ----------
    max_epsilon : float or None
        Largest acceptable differential-privacy epsilon. A backend meets it only with a
        DP claim at or below it and no audited lower bound above it.
    max_residual_risk : float or None
        Largest acceptable worst residual risk of any attack, in [0, 1].
    max_wan_seconds : float or None
        Largest acceptable time modelled on the wide-area network profile (``wan``).
    max_error : float or None
        Largest acceptable value of the task's primary metric when it is an error
        (lower is better: relative error, AUC shortfall, TVD).
    min_accuracy : float or None
        Smallest acceptable value of the task's primary metric when higher is better
        (F1, decision agreement), in [0, 1].
    rationale : str
        Why the scenario needs these, in plain language, shown in the report.
    """

    max_epsilon: float | None = None
    max_residual_risk: float | None = None
    max_wan_seconds: float | None = None
    max_error: float | None = None
    min_accuracy: float | None = None
    rationale: str = ""

    def stated(self) -> dict[str, float]:
        """Return the numeric requirements the card states, by field name."""
        values = {n: getattr(self, n) for n in REQUIREMENT_BOUNDS}
        return {n: float(v) for n, v in values.items() if v is not None}


#: Field of ``[requirements]`` to (lowest allowed, highest allowed, lowest is exclusive).
REQUIREMENT_BOUNDS: Mapping[str, tuple[float, float, bool]] = MappingProxyType(
    {
        "max_epsilon": (0.0, float("inf"), True),
        "max_residual_risk": (0.0, 1.0, False),
        "max_wan_seconds": (0.0, float("inf"), True),
        "max_error": (0.0, float("inf"), False),
        "min_accuracy": (0.0, 1.0, False),
    }
)


@dataclass(frozen=True)
class Sweep:
    """One ``[[sweeps]]`` entry: a backend parameter and the values to run it at."""

    backend: str
    param: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Scenario:
    """A validated scenario card.

    Attributes
    ----------
    id, title, summary : str
        Identity and one-line description.
    path : Path
        The card file.
    story : Path or None
        The Markdown story for the workshop.
    kind : str
        Task kind.
    parties : tuple of PartyRole
        Parties and roles.
    data : DataSpec
        Data generation and split.
    task_params : Mapping
        Validated ``[task]`` table.
    attackers : tuple of str
        Attacker models that apply.
    backend_params : Mapping
        Default parameters per backend name.
    sweeps : tuple of Sweep
        Parameter sweeps.
    questions : tuple of str
        Questions the workshop discusses.
    card_hash : str
        SHA-256 of the card file's bytes.
    card_text : str
        The card as read (the text ``card_hash`` is the hash of): a cell's worker gets
        this, never the file, so a card edited during a run changes no later cell.
    network : Mapping of str to NetworkProfile
        Extra network profiles the card defines (``[network.<name>]``), modelled on
        top of the defaults.
    requirements : Requirements
        What the scenario needs from a backend (``[requirements]``); empty if the card
        states none.
    """

    id: str
    title: str
    summary: str
    path: Path
    story: Path | None
    kind: str
    parties: tuple[PartyRole, ...]
    data: DataSpec
    task_params: Mapping[str, Any]
    attackers: tuple[str, ...]
    backend_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sweeps: tuple[Sweep, ...] = ()
    questions: tuple[str, ...] = ()
    card_hash: str = ""
    network: Mapping[str, NetworkProfile] = field(default_factory=dict)
    requirements: Requirements = field(default_factory=Requirements)
    card_text: str = field(default="", repr=False, compare=False)

    def sweeps_for(self, backend: str) -> tuple[Sweep, ...]:
        """Return the sweeps declared for ``backend``."""
        return tuple(s for s in self.sweeps if s.backend == backend)


def default_scenario_dir() -> Path:
    """Return where cards are looked up: ``$PETS_SCENARIOS``, else ``./scenarios`` if it
    exists, else the ``scenarios/`` folder of the source checkout."""
    env = os.environ.get("PETS_SCENARIOS")
    if env:
        return Path(env)
    here = Path.cwd() / "scenarios"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "scenarios"


def find_scenarios(directory: Path | None = None) -> dict[str, Path]:
    """Return scenario id to card path for every ``*.toml`` card in ``directory``."""
    directory = default_scenario_dir() if directory is None else Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no scenario folder at {directory} (set PETS_SCENARIOS)")
    return {p.stem: p for p in sorted(directory.glob("*.toml"))}


def load_scenario(
    ref: str | os.PathLike[str], directory: Path | None = None, *, text: str | None = None
) -> Scenario:
    """Load and validate a card, by path or by id.

    Parameters
    ----------
    ref : str or path-like
        A path to a ``.toml`` card, or a scenario id found in ``directory``.
    directory : Path, optional
        Where ids are looked up (default :func:`default_scenario_dir`).
    text : str, optional
        The card's text as read earlier (:attr:`Scenario.card_text`): the file is not
        read again.

    Raises
    ------
    CardError
        A field is missing or wrong; the message names the file and the field.
    """
    path = Path(ref)
    if path.suffix != ".toml":
        cards = find_scenarios(directory)
        if str(ref) not in cards:
            raise KeyError(unknown_name_message("scenario", str(ref), cards))
        path = cards[str(ref)]
    source = str(path)
    raw_bytes = _read_card(path) if text is None else text.encode("utf-8")
    text = _card_text(raw_bytes, source)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CardError(source, "(syntax)", f"not valid TOML: {exc}") from None
    card = CardTable(raw, source, "")
    schema = card.get("schema", int, CARD_SCHEMA)
    if schema != CARD_SCHEMA:
        raise card.error(
            "schema", f"card format {schema} is not read here; this version reads {CARD_SCHEMA}"
        )
    scenario_id = card.get("id", str)
    if scenario_id != path.stem:
        raise card.error("id", f"{scenario_id!r} must match the file name {path.stem!r}")
    kind = card.get("kind", str, allowed=tuple(TASK_KINDS))
    parties = _parse_parties(card, source)
    data, columns = _parse_data(card.table("data"), [p.name for p in parties])
    task_params = TASK_KINDS[kind].parse_params(card.get("task", dict), source, parties, columns)
    attackers = tuple(card.get("attackers", list, list(ATTACKER_MODELS), allowed=ATTACKER_MODELS))
    backend_table = card.table("backends", {})
    backend_params = {}
    for name in backend_table.raw:
        backend_params[name] = MappingProxyType(dict(backend_table.get(name, dict)))
    sweeps = []
    for i, s in enumerate(card.get("sweeps", list, [])):
        sub = CardTable(s, source, f"sweeps[{i}]")
        values = sub.get("values", list)
        if not values:
            raise sub.error("values", "needs at least one value")
        sweeps.append(Sweep(sub.get("backend", str), sub.get("param", str), tuple(values)))
        sub.check_unknown()
    network = _parse_network(card.table("network", {}))
    requirements = _parse_requirements(card.table("requirements", {}))
    story_name = card.get("story", str, f"{scenario_id}.md")
    story = path.parent / story_name
    scenario = Scenario(
        id=scenario_id,
        title=card.get("title", str),
        summary=card.get("summary", str),
        path=path,
        story=story if story.exists() else None,
        kind=kind,
        parties=parties,
        data=data,
        task_params=MappingProxyType(task_params),
        attackers=attackers,
        backend_params=MappingProxyType(backend_params),
        sweeps=tuple(sweeps),
        questions=tuple(card.get("questions", list, [])),
        card_hash=hashlib.sha256(raw_bytes).hexdigest(),
        network=MappingProxyType(network),
        requirements=requirements,
        card_text=text,
    )
    card.check_unknown()
    return scenario


def _read_card(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CardError(str(path), "(file)", "no such card file") from None
    except OSError as exc:
        raise CardError(str(path), "(file)", f"cannot be read: {exc.strerror or exc}") from None


def _card_text(raw_bytes: bytes, source: str) -> str:
    """Decode a card as UTF-8 text, refusing UTF-16 and binary files by name."""
    if raw_bytes.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw_bytes[:64]:
        raise CardError(
            source, "(encoding)", "is UTF-16 or binary; a card must be UTF-8 text (TOML)"
        )
    try:
        return raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CardError(
            source,
            "(encoding)",
            f"is not UTF-8 text (byte {exc.start} cannot be read); a card must be UTF-8 TOML",
        ) from None


def _parse_network(table: CardTable) -> dict[str, NetworkProfile]:
    profiles = {}
    for name in table.raw:
        sub = table.table(name)
        try:
            profiles[name] = NetworkProfile(
                name,
                latency_ms=sub.get("latency_ms", (int, float)),
                bandwidth_mbit_s=sub.get("bandwidth_mbit_s", (int, float)),
            )
        except ValueError as exc:
            raise table.error(name, str(exc)) from None
        sub.check_unknown()
    return profiles


def _parse_requirements(table: CardTable) -> Requirements:
    values: dict[str, Any] = {}
    for name, (low, high, exclusive) in REQUIREMENT_BOUNDS.items():
        value = table.get(name, float, None)
        if value is None:
            continue
        too_low = value <= low if exclusive else value < low
        if too_low or value > high:
            lower = f"> {low:g}" if exclusive else f">= {low:g}"
            upper = "" if high == float("inf") else f" and <= {high:g}"
            raise table.error(name, f"must be {lower}{upper}, got {value:g}")
        values[name] = value
    values["rationale"] = table.get("rationale", str, "")
    table.check_unknown()
    return Requirements(**values)


def _parse_parties(card: CardTable, source: str) -> tuple[PartyRole, ...]:
    parties = []
    for i, p in enumerate(card.get("parties", list)):
        sub = CardTable(p, source, f"parties[{i}]")
        parties.append(PartyRole(sub.get("name", str), sub.get("role", str, allowed=ROLES)))
        sub.check_unknown()
    names = [p.name for p in parties]
    if len(parties) < 2:
        raise card.error("parties", "a scenario needs at least two parties")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        repeated = ", ".join(duplicates)
        raise card.error("parties", f"party names must be unique; repeated: {repeated}")
    return tuple(parties)


def _parse_data(table: CardTable, party_names: Sequence[str]) -> tuple[DataSpec, tuple[str, ...]]:
    """Return the ``[data]`` table checked, and the columns of its source."""
    source = table.get("source", str, "cohort", allowed=DATA_SOURCES)
    columns = _source_columns(source)
    size = table.get("size", int)
    quick = table.get("quick_size", int, min(size, 5_000))
    holdout = table.get("holdout", float, 0.0)
    population = table.get_filter("filter", columns)
    for key, value in (("size", size), ("quick_size", quick)):
        if value < 100:
            raise table.error(key, f"must be at least 100 patients, got {value}")
    sizes = _parse_sizes(table)
    if not 0 <= holdout < 1:
        raise table.error("holdout", f"must be in [0, 1), got {holdout}")
    split = table.table("split")
    method = split.get("method", str, allowed=SPLIT_METHODS)
    spec: dict[str, Any] = {"method": method}
    if method in ("catchment", "overlap") and "gp_practice" not in columns:
        raise split.error(
            "method",
            f"{method!r} splits by GP practice, which {source!r} data lacks; allowed: "
            "column, whole",
        )
    if method == "column":
        spec["column"] = split.get("column", str, allowed=columns)
        assign = split.table("assign")
        spec["assign"] = {}
        for party in assign.raw:
            _check_party(assign, party, party_names)
            spec["assign"][party] = assign.get(party, list)
    elif method == "catchment":
        shares = split.table("shares")
        spec["shares"] = {}
        for party in shares.raw:
            _check_party(shares, party, party_names)
            share = shares.get(party, float)
            if share <= 0:
                raise shares.error(party, f"must be > 0, got {share}")
            spec["shares"][party] = share
    elif method == "overlap":
        per_party = split.table("parties")
        spec["parties"] = {}
        for party in per_party.raw:
            _check_party(per_party, party, party_names)
            sub = per_party.table(party)
            entry = {
                "practice_fraction": sub.get("practice_fraction", float, 1.0),
                "query": sub.get_filter("query", columns),
                "extra_fraction": sub.get("extra_fraction", float, 0.0),
            }
            sub.check_unknown()
            spec["parties"][party] = entry
    else:
        party = split.get("party", str, allowed=list(party_names))
        spec["party"] = party
    split.check_unknown()
    table.check_unknown()
    spec_out = DataSpec(source, size, quick, holdout, MappingProxyType(spec), population, sizes)
    return spec_out, columns


def _parse_sizes(table: CardTable) -> tuple[int, ...]:
    """The ``sizes`` sweep of ``[data]``: whole numbers of patients, at least 100 each,
    strictly increasing (so none is repeated)."""
    raw = table.get("sizes", list, None)
    if raw is None:
        return ()
    try:
        return check_sizes(raw)
    except ValueError as exc:
        raise table.error("sizes", str(exc)) from None


def check_sizes(values: Sequence[Any]) -> tuple[int, ...]:
    """Return ``values`` as a size sweep if they are whole numbers of patients, each at
    least 100, strictly increasing.

    Raises
    ------
    ValueError
        The first problem, in one line.
    """
    if not values:
        raise ValueError("needs at least one size")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"sizes must be whole numbers of patients, got {value!r}")
        if value < 100:
            raise ValueError(f"each size must be at least 100 patients, got {value}")
    for before, after in itertools.pairwise(values):
        if after <= before:
            word = "repeated" if after == before else "out of order"
            raise ValueError(
                f"sizes must be listed once each, smallest first; {after} is {word} "
                f"(got {list(values)})"
            )
    return tuple(values)


def _check_party(table: CardTable, party: str, party_names: Sequence[str]) -> None:
    if party not in party_names:
        raise table.error(party, f"is not a party of the card; parties: {', '.join(party_names)}")


def _source_columns(source: str) -> tuple[str, ...]:
    if source == "cohort":
        from pets.data import COLUMNS

        return tuple(COLUMNS)
    from pets.data import load_real_dataset

    return tuple(load_real_dataset(source).columns)


def _load_source(spec: DataSpec, size: int, seed: int) -> pd.DataFrame:
    if spec.source == "cohort":
        from pets.data import generate_cohort

        return generate_cohort(size, seed=seed)
    from pets.data import load_real_dataset

    frame = load_real_dataset(spec.source)
    if size < len(frame):
        frame = frame.sample(n=size, random_state=seed).reset_index(drop=True)
    return frame


def _split(frame: pd.DataFrame, spec: Mapping[str, Any], rng: np.random.Generator) -> dict:
    from pets.data import split_by_column, split_catchment, split_overlap

    method = spec["method"]
    if method == "column":
        return split_by_column(frame, spec["column"], spec["assign"])
    if method == "catchment":
        names = list(spec["shares"])
        return split_catchment(frame, names, [spec["shares"][n] for n in names], rng)
    if method == "overlap":
        return split_overlap(frame, spec["parties"], rng)
    return {spec["party"]: frame.reset_index(drop=True)}


def build_problem(scenario: Scenario, size: int, seed: int) -> Problem:
    """Generate the cell's data from the card, seed and size, and build the task.

    The same (card, size, seed) always gives the same problem.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    frame = _load_source(scenario.data, size, seed)
    if scenario.data.filter:
        generated = len(frame)
        frame = select_rows(frame, scenario.data.filter).reset_index(drop=True)
        if not len(frame):
            raise CardError(
                str(scenario.path),
                "data.filter",
                f"{scenario.data.filter!r} leaves 0 of {generated} patients; "
                "loosen it or raise the size",
            )
    holdout = None
    if scenario.data.holdout > 0:
        from pets.data import split_holdout

        frame, holdout = split_holdout(frame, scenario.data.holdout, rng)
    partitions = _split(frame, scenario.data.split, rng)
    empty = sorted(name for name, rows in partitions.items() if not len(rows))
    if empty:
        raise CardError(
            str(scenario.path),
            "data.split",
            f"leaves no patients to {', '.join(empty)} at size {size}; "
            "change the split or raise the size",
        )
    kind = TASK_KINDS[scenario.kind]
    problem = kind.build(
        scenario.task_params, scenario.parties, ScenarioData(partitions, holdout, rng)
    )
    public = {**problem.task.public, "seed": backend_seed(size, seed)}
    problem.task = replace(problem.task, scenario=scenario.id, public=freeze(public))
    return problem


def backend_seed(size: int, seed: int) -> int:
    """Return the seed a cell hands its backend for non-cryptographic random choices.

    Derived from the cell's (size, seed) and published in ``task.public["seed"]``, so
    one cell gives the same release on every run. It is not the seed the cohort was
    drawn from.
    """
    return int(np.random.SeedSequence([seed, size, 0xBAC4E2D]).generate_state(1)[0])
