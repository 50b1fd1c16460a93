"""What a report is built from: a run folder's records, its manifest, and the cards.

Figures come from the records only. The cards supply the words: the story, the
parties, the attacker models and the ``[requirements]``. A card is taken from the run
folder's own copy (``cards/``, written by ``pets run``), else the path in the manifest,
else the scenario folder, and checked against the records' card hash: a card that
changed since the run is still used for its words, and the report says so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from pets.records import ResultStore
from pets.scenarios import Requirements, Scenario, find_scenarios, load_scenario
from pets.tasks import CardError

__all__ = ["CardSource", "RunEvidence", "keep_cards", "load_run"]


@dataclass(frozen=True)
class CardSource:
    """The card a scenario's words come from.

    Attributes
    ----------
    card : Scenario or None
        The loaded card, or None when none was found or it no longer loads.
    status : str
        ``same`` (its hash is the records'), ``changed`` (found, but edited since the
        run) or ``missing``.
    note : str
        Where it came from, or why it is missing.
    requirements : Requirements
        The ``[requirements]`` verdicts are given against: the card's own, or, when the
        run's card states none, the current card's in the scenario folder (requirements
        judge figures; they do not change them).
    requirements_note : str
        Where the requirements came from when not from the run's card.
    """

    card: Scenario | None
    status: str
    note: str = ""
    requirements: Requirements = field(default_factory=Requirements)
    requirements_note: str = ""


@dataclass
class RunEvidence:
    """Everything one report is built from.

    Attributes
    ----------
    frame : DataFrame
        The records, flattened by :func:`pets.records.records_frame`.
    manifest : dict
        ``manifest.json`` (empty if absent).
    cards : dict of str to CardSource
        Per scenario of the records.
    run_dir : Path or None
        The run folder, if the evidence came from one.
    """

    frame: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    cards: dict[str, CardSource] = field(default_factory=dict)
    run_dir: Path | None = None

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        manifest: dict[str, Any] | None = None,
        scenario_dir: Path | None = None,
    ) -> RunEvidence:
        """Build evidence from records in memory, finding cards as :func:`load_run` does."""
        manifest = dict(manifest or {})
        cards = _find_cards(frame, manifest, None, scenario_dir)
        return cls(frame=frame, manifest=manifest, cards=cards)

    @property
    def scenarios(self) -> list[str]:
        """Scenario ids of the records, sorted."""
        if self.frame.empty:
            return []
        return sorted(str(s) for s in self.frame["scenario"].unique())


def load_run(run_dir: str | os.PathLike[str], scenario_dir: Path | None = None) -> RunEvidence:
    """Read a run folder: records, manifest and the cards they were run from.

    Raises
    ------
    FileNotFoundError
        The folder has no ``records.jsonl``.
    """
    store = ResultStore(run_dir)
    if not store.jsonl_path.exists():
        raise FileNotFoundError(f"{store.root} holds no records.jsonl: is it a run folder?")
    frame = store.to_frame()
    manifest = store.read_manifest()
    cards = _find_cards(frame, manifest, store.root, scenario_dir)
    return RunEvidence(frame=frame, manifest=manifest, cards=cards, run_dir=store.root)


def _card_hashes(frame: pd.DataFrame) -> dict[str, set[str]]:
    if frame.empty or "card_hash" not in frame:
        return {}
    return {
        str(sid): {h for h in group["card_hash"] if isinstance(h, str) and h}
        for sid, group in frame.groupby("scenario")
    }


def _find_cards(
    frame: pd.DataFrame,
    manifest: dict[str, Any],
    run_dir: Path | None,
    scenario_dir: Path | None,
) -> dict[str, CardSource]:
    try:
        known = find_scenarios(scenario_dir)
    except FileNotFoundError:
        known = {}
    out = {}
    for sid, hashes in _card_hashes(frame).items():
        candidates = []
        if run_dir is not None:
            candidates.append(run_dir / "cards" / f"{sid}.toml")
        listed = manifest.get("cards", {}).get(sid, {}).get("path")
        if listed:
            candidates.append(Path(listed))
        if sid in known:
            candidates.append(known[sid])
        source = _pick_card(sid, hashes, candidates)
        out[sid] = _with_requirements(source, known.get(sid))
    return out


def _with_requirements(source: CardSource, current: Path | None) -> CardSource:
    if source.card is not None and source.card.requirements.stated():
        return replace(source, requirements=source.card.requirements)
    if current is None or (source.card is not None and source.card.path == current):
        return source
    try:
        card = load_scenario(current)
    except (CardError, KeyError, OSError):
        return source
    if not card.requirements.stated():
        return source
    note = f"requirements from the current card {current}, which the run's card did not state"
    return replace(source, requirements=card.requirements, requirements_note=note)


def _pick_card(sid: str, hashes: set[str], candidates: list[Path]) -> CardSource:
    fallback: CardSource | None = None
    for path in candidates:
        if not path.is_file():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            card = load_scenario(path)
        except (CardError, KeyError, OSError) as exc:
            fallback = fallback or CardSource(None, "missing", f"{path} no longer loads: {exc}")
            continue
        if digest in hashes:
            return CardSource(card, "same", str(path))
        if fallback is None or fallback.card is None:
            fallback = CardSource(
                card, "changed", f"{path} was edited after the run (its hash differs)"
            )
    return fallback or CardSource(None, "missing", f"no card {sid}.toml found")


def keep_cards(run_dir: str | os.PathLike[str], scenario_dir: Path | None = None) -> list[Path]:
    """Copy the cards (and stories) the run's records were made from into
    ``run_dir/cards/``, so the folder alone rebuilds its report.

    Only cards whose hash matches the records' are copied; copies already there are
    kept. Returns the files written.
    """
    evidence = load_run(run_dir, scenario_dir)
    target = Path(run_dir) / "cards"
    written = []
    for sid, source in evidence.cards.items():
        if source.status != "same" or source.card is None:
            continue
        destination = target / f"{sid}.toml"
        if destination.resolve() == source.card.path.resolve():
            continue
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.card.path, destination)
        written.append(destination)
        if source.card.story is not None:
            story = target / source.card.story.name
            shutil.copyfile(source.card.story, story)
            written.append(story)
    return written
