"""What the report says, gathered once from the evidence and rendered twice (HTML and
Markdown): per scenario its scorecard, verdicts, curves, attacks, epsilon table and
identifiability figures; for the run its caveats and reproducibility facts."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pets.report.evidence import CardSource, RunEvidence
from pets.report.guidance import IDENTIFIABILITY_INDICATORS
from pets.report.scorecard import (
    attack_table,
    party_bytes,
    row_label,
    scorecard,
    utility_curves,
)
from pets.report.units import is_missing, show_epsilon
from pets.report.verdicts import pareto_front, requirement_verdicts
from pets.scenarios import Requirements

__all__ = [
    "Caveat",
    "RunFindings",
    "ScenarioFindings",
    "claim_summary",
    "gather",
]


@dataclass(frozen=True)
class Caveat:
    """One caveat: its kind (a short heading) and what it says."""

    kind: str
    text: str


@dataclass
class ScenarioFindings:
    """Everything the report shows for one scenario."""

    id: str
    source: CardSource
    table: pd.DataFrame
    front: pd.Series
    verdicts: pd.DataFrame
    curves: pd.DataFrame
    attacks: pd.DataFrame
    epsilons: pd.DataFrame
    identifiability: pd.DataFrame
    bytes: pd.DataFrame

    @property
    def requirements(self) -> Requirements:
        """The card's ``[requirements]`` (empty without a card)."""
        return self.source.requirements

    @property
    def many_sizes(self) -> bool:
        """True when the scenario ran at more than one size."""
        return bool(len(self.table)) and self.table["size"].nunique() > 1


@dataclass
class RunFindings:
    """Everything the report shows for the run."""

    evidence: RunEvidence
    scenarios: list[ScenarioFindings]
    caveats: list[Caveat] = field(default_factory=list)
    skipped_attacks: pd.DataFrame = field(default_factory=pd.DataFrame)
    reproducibility: list[tuple[str, str]] = field(default_factory=list)
    pet_classes: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)


def claim_summary(claim: dict[str, Any]) -> str:
    """Return a backend's claim in a few words: DP epsilon and delta, cryptographic
    strength and adversary model, collusion, or no formal guarantee."""
    if not claim:
        return "-"
    parts = []
    if not is_missing(claim.get("epsilon")):
        text = f"DP ε={show_epsilon(claim['epsilon'])}"
        if claim.get("delta"):
            text += f", δ={claim['delta']:.0e}"
        parts.append(text)
    if claim.get("security_bits"):
        parts.append(f"{claim['security_bits']}-bit")
    model = claim.get("security_model")
    if model and model != "none":
        text = str(model)
        if claim.get("collusion_threshold") is not None:
            text += f", ≤{claim['collusion_threshold']} colluding"
        parts.append(text)
    if not claim.get("formal"):
        parts.append("no formal guarantee")
    return "; ".join(parts) if parts else "formal claim"


def _epsilons(table: pd.DataFrame, attacks: pd.DataFrame) -> pd.DataFrame:
    rows = []
    dp = table[pd.to_numeric(table["eps_claimed"], errors="coerce").notna()]
    many = table["size"].nunique() > 1 if len(table) else False
    for _, r in dp.iterrows():
        audits = (
            attacks[
                (attacks["backend"] == r["backend"])
                & (attacks["params"] == r["params"])
                & (attacks["size"] == r["size"])
                & (attacks["attack"] == "dp_audit")
            ]
            if len(attacks)
            else attacks
        )
        audited = r["eps_lower"]
        if not is_missing(audited):
            audit = "ran"
        elif len(audits) and audits["skipped"].any():
            audit = "skipped: " + _first_sentence(audits["note"].iloc[0])
        elif len(audits) and not audits["applicable"].any():
            audit = "not applicable: " + _first_sentence(audits["note"].iloc[0])
        else:
            audit = "not run"
        claim = r["claim"] or {}
        rows.append(
            {
                "label": row_label(r, with_size=many),
                "backend": r["backend"],
                "params": r["params"],
                "size": r["size"],
                "claimed": r["eps_claimed"],
                "delta": claim.get("delta"),
                "accountant": claim.get("accountant") or "-",
                "spent": r["eps_spent"],
                "audited": audited,
                "audit": audit,
                "contradicted": not is_missing(audited)
                and float(audited) > float(r["eps_claimed"]),
            }
        )
    return pd.DataFrame(rows)


def _first_sentence(text: Any) -> str:
    text = str(text or "")
    return text.split(": ")[0] if len(text) > 140 else text


def _identifiability(attacks: pd.DataFrame, many: bool) -> pd.DataFrame:
    if attacks.empty:
        return attacks
    mine = attacks[attacks["attack"].isin(list(IDENTIFIABILITY_INDICATORS)) & attacks["applicable"]]
    rows = []
    for _, a in mine.iterrows():
        rows.append(
            {
                "label": row_label(a, with_size=many),
                "indicator": IDENTIFIABILITY_INDICATORS[a["attack"]][0],
                "attack": a["attack"],
                "attacker": a["attacker"],
                "rate": a.get("rate"),
                "ci_low": a.get("ci_low"),
                "ci_high": a.get("ci_high"),
                "control": a["control"],
                "risk": a["risk"],
                "risk_low": a.get("risk_low"),
                "risk_high": a.get("risk_high"),
                "trials": a.get("trials"),
            }
        )
    return pd.DataFrame(rows)


def _scenario(
    sid: str,
    table: pd.DataFrame,
    evidence: RunEvidence,
    curves: pd.DataFrame,
    attacks: pd.DataFrame,
    bytes_table: pd.DataFrame,
) -> ScenarioFindings:
    source = evidence.cards.get(sid, CardSource(None, "missing", "no card hash in the records"))
    requirements = source.requirements
    mine = attacks[attacks["scenario"] == sid] if len(attacks) else attacks
    many = table["size"].nunique() > 1
    return ScenarioFindings(
        id=sid,
        source=source,
        table=table,
        front=pareto_front(table),
        verdicts=requirement_verdicts(table, requirements),
        curves=curves[curves["scenario"] == sid] if len(curves) else curves,
        attacks=mine,
        epsilons=_epsilons(table, mine),
        identifiability=_identifiability(mine, many),
        bytes=bytes_table[bytes_table["scenario"] == sid] if len(bytes_table) else bytes_table,
    )


def gather(evidence: RunEvidence) -> RunFindings:
    """Return what the report says about ``evidence``."""
    frame = evidence.frame
    tables = scorecard(frame)
    curves = utility_curves(frame)
    attacks = attack_table(frame)
    bytes_table = party_bytes(frame)
    scenarios = [
        _scenario(sid, table, evidence, curves, attacks, bytes_table)
        for sid, table in tables.items()
    ]
    classes = sorted({c for t in tables.values() for c in t["pet_class"] if c})
    backends = sorted({b for t in tables.values() for b in t["backend"]})
    findings = RunFindings(
        evidence=evidence,
        scenarios=scenarios,
        pet_classes=classes,
        backends=backends,
        skipped_attacks=_skipped(attacks),
        reproducibility=_reproducibility(evidence),
    )
    findings.caveats = _caveats(findings)
    return findings


def _skipped(attacks: pd.DataFrame) -> pd.DataFrame:
    """Attacks that did not run on some cells, grouped by attack and reason."""
    if attacks.empty:
        return pd.DataFrame(columns=["attack", "reason", "cells", "example"])
    mine = attacks[attacks["skipped"] | attacks["failed"]]
    rows = []
    for _, a in mine.iterrows():
        note = str(a["note"] or "no reason recorded")
        rows.append(
            {
                "attack": a["attack"],
                "reason": re.sub(r"\d+(\.\d+)?", "N", note),
                "example": f"{a['scenario']}, {row_label(a)}: {note}",
            }
        )
    if not rows:
        return pd.DataFrame(columns=["attack", "reason", "cells", "example"])
    table = pd.DataFrame(rows)
    return (
        table.groupby(["attack", "reason"], sort=True)
        .agg(cells=("example", "size"), example=("example", "first"))
        .reset_index()
    )


def _contradiction(label: str, row: pd.Series, attacks: pd.DataFrame) -> str:
    """Name the attacks that contradict a scorecard row's claim, each with its lower
    bound and the cap the claim allows."""
    found: list[str] = []
    if len(attacks) and "contradicted" in attacks:
        mine = attacks[
            (attacks["backend"] == row["backend"])
            & (attacks["params"] == row["params"])
            & (attacks["size"] == row["size"])
            & attacks["contradicted"].fillna(False).astype(bool)
        ]
        found = [
            f"{a['attack']} on {a['observer']} ({a['claim_check']})" for _, a in mine.iterrows()
        ]
    if not found:
        return f"{label}: a measurement contradicts its claim."
    return f"{label}: the claim is contradicted by " + "; ".join(found) + "."


def _caveats(findings: RunFindings) -> list[Caveat]:
    out: list[Caveat] = []
    for s in findings.scenarios:
        for _, r in s.table.iterrows():
            label = f"{s.id}: {row_label(r, with_size=s.many_sizes)}"
            flags = set(r["flags"].split(", ")) if r["flags"] else set()
            if "claim_contradicted" in flags:
                out.append(Caveat("Contradicted claim", _contradiction(label, r, s.attacks)))
            if "no_traffic_for_inputs" in flags:
                out.append(
                    Caveat(
                        "Output without traffic",
                        f"{label}: the output needed other parties' data but none of them "
                        "sent anything through the harness.",
                    )
                )
            if r["verified"] is False:
                out.append(
                    Caveat(
                        "Unverified backend",
                        f"{label}: has not passed the conformance kit with these parameters "
                        f"(run `pets check {r['backend']}`).",
                    )
                )
            if "api" in str(r["isolation"]).split(", "):
                out.append(
                    Caveat(
                        "Not isolated",
                        f"{label}: ran in the harness's own process (isolation api); its "
                        "parties were not kept apart by the operating system.",
                    )
                )
            if r["status"] != "ok":
                out.append(Caveat("Did not run", f"{label}: {r['status']}: {r['error']}"))
        if s.source.status != "same":
            out.append(Caveat("Card", f"{s.id}: {s.source.note}"))
    unknown = [
        f"{s.id}: {row_label(r, with_size=s.many_sizes)}"
        for s in findings.scenarios
        for _, r in s.table.iterrows()
        if r["status"] == "ok" and not r["isolation"]
    ]
    if unknown:
        out.append(
            Caveat(
                "Isolation not recorded",
                f"{len(unknown)} rows come from records without the isolation field (written "
                "before parties ran as their own processes): whether their parties were kept "
                "apart is not known.",
            )
        )
    frame = findings.evidence.frame
    if len(frame):
        unsupported = int((frame["status"] == "unsupported").sum())
        if unsupported:
            out.append(
                Caveat(
                    "Not applicable",
                    f"{unsupported} cells were skipped because the backend does not serve "
                    "the scenario's task kind; they appear nowhere else.",
                )
            )
        modes = sorted({m for m in frame.get("leakage.mode", pd.Series(dtype=object)) if m})
        if "fast" in modes or "off" in modes:
            out.append(
                Caveat(
                    "Attack effort",
                    f"Leakage mode {', '.join(modes)}: 'fast' bounds each attack's time, so "
                    "slow audits are skipped; 'off' runs no attack and leaves risk unmeasured.",
                )
            )
    sizes = findings.evidence.manifest.get("sizes") or []
    quick = [s for s in findings.scenarios if s.source.card is not None]
    small = sorted(
        {
            s.id
            for s in quick
            if s.source.card is not None
            and (s.table["size"].astype(float) < s.source.card.data.size).any()
        }
    )
    if small:
        out.append(
            Caveat(
                "Small sizes",
                f"Scenarios run below their card's full size ({', '.join(small)}; sizes run: "
                f"{', '.join(str(x) for x in sizes) or 'see records'}): quick runs show "
                "orders of magnitude, not the costs or risks at full scale.",
            )
        )
    return out


def _reproducibility(evidence: RunEvidence) -> list[tuple[str, str]]:
    manifest = evidence.manifest
    frame = evidence.frame
    env = manifest.get("environment") or {}
    if not env and len(frame) and "environment" in frame:
        env = json.loads(frame["environment"].iloc[0] or "{}")
    packages = env.get("packages") or {}
    options = manifest.get("options") or {}
    command = manifest.get("command")
    items = [
        (
            "command line",
            " ".join(command)
            if isinstance(command, list)
            else command or "not recorded (run from Python)",
        ),
        ("run folder", str(evidence.run_dir) if evidence.run_dir else "records in memory"),
        (
            "created / updated",
            f"{manifest.get('created_at', '-')} / {manifest.get('updated_at', '-')}",
        ),
        ("git commit", str(env.get("git_commit") or "-")),
        ("Python", f"{env.get('implementation', '')} {env.get('python', '-')}".strip()),
        ("platform", str(env.get("platform") or "-")),
        (
            "machine",
            f"{env.get('cpu', '-')}, {env.get('cpu_count', '-')} CPUs, {env.get('machine', '')}",
        ),
        ("packages", ", ".join(f"{k} {v}" for k, v in sorted(packages.items())) or "-"),
        ("seeds", ", ".join(str(s) for s in manifest.get("seeds", [])) or _distinct(frame, "seed")),
        ("sizes", ", ".join(str(s) for s in manifest.get("sizes", [])) or _distinct(frame, "size")),
        ("repeats", _distinct(frame, "repeat")),
        ("options", ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "-"),
        ("record schema", _distinct(frame, "schema_version")),
        ("cells", str(len(frame))),
    ]
    cards = {sid: info.get("sha256", "-") for sid, info in (manifest.get("cards") or {}).items()}
    if not cards and len(frame) and "card_hash" in frame:
        cards = dict(zip(frame["scenario"], frame["card_hash"], strict=True))
    for sid, digest in sorted(cards.items()):
        items.append((f"card {sid}", f"sha256 {digest}"))
    return items


def _distinct(frame: pd.DataFrame, column: str) -> str:
    if frame.empty or column not in frame:
        return "-"
    return ", ".join(str(v) for v in sorted(frame[column].dropna().unique()))
