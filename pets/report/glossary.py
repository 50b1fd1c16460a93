"""Words the report explains: attacker models, flags, statuses, roles, isolation."""

from __future__ import annotations

from types import MappingProxyType

__all__ = [
    "ATTACKER_MODELS",
    "FLAGS",
    "ISOLATION",
    "ROLE_MUST_NOT_LEARN",
    "STATUSES",
    "flag_words",
]

#: The attacker models, as the report names them.
ATTACKER_MODELS = MappingProxyType(
    {
        "A0": (
            "Recipient",
            "Whoever receives the released output, and nothing else.",
        ),
        "A1": (
            "Motivated intruder",
            "The output plus auxiliary quasi-identifiers (age band, sex, area): a "
            "reasonably competent person using public resources and no specialist "
            "skills, the starting point of the ICO's motivated intruder test.",
        ),
        "A2": (
            "Honest-but-curious party",
            "A party that follows the protocol but reads everything it receives: its own "
            "input, its full view of the messages, and the output.",
        ),
        "A3": (
            "Worst-case auditor",
            "Knows every record but one and chooses the data, to measure how much one "
            "person can change the output: a lower bound on epsilon.",
        ),
    }
)

#: Flag name to what it means, in plain language.
FLAGS = MappingProxyType(
    {
        "exposes_inputs": "Another party's raw values were readable in the bytes a party "
        "received (transcript exposure above 0.5 even at the lower end of its 95% interval).",
        "claim_contradicted": "An attack did better than the backend's own claim allows, "
        "even at the lower end of its 95% interval: above the cap an epsilon claim puts on "
        "every attack, above what the declared leakage alone allows (no better than its "
        "control for what a formal claim does not declare, inputs exposed that the claim "
        "does not declare), or an audited epsilon above the claimed one. The record names "
        "the attack, its lower bound and the cap.",
        "no_traffic_for_inputs": "The output needed other parties' data, yet none of them "
        "sent a byte through the harness: the data reached the output by a route the "
        "harness does not carry (a file, a socket of its own, shared memory), so no "
        "attack on the parties' views could see it.",
        "reveals_individuals": "A differencing attack learned individual patients' values "
        "from the outputs (residual risk above 0.5 even at the lower end of its 95% interval).",
        "reconstructs": "Records or training data were reconstructed from the outputs or "
        "model updates (residual risk above 0.5 even at the lower end of its 95% interval).",
        "reidentifies": "Pseudonymised identifiers were reversed to real identifiers "
        "(residual risk above 0.5 even at the lower end of its 95% interval).",
        "reveals_membership": "An attacker could tell whether a person was in the data "
        "(residual risk above 0.5 even at the lower end of its 95% interval).",
        "singles_out": "Predicates on the release pick out single real patients (residual "
        "risk above 0.5 even at the lower end of its 95% interval).",
        "links_records": "Release records were linked to an intruder's auxiliary data "
        "(residual risk above 0.5 even at the lower end of its 95% interval).",
        "infers_attributes": "Sensitive attributes were inferred from the release (residual "
        "risk above 0.5 even at the lower end of its 95% interval).",
        "model_extracted": "The supplier's model was recovered from its scores (residual "
        "risk above 0.5 even at the lower end of its 95% interval).",
        "attack_failed": "One of the harness's attacks broke on this cell; its figure is "
        "missing, not zero.",
    }
)

#: Record status to plain words.
STATUSES = MappingProxyType(
    {
        "ok": "ran and was scored",
        "failed": "the backend raised an error or returned a wrong output",
        "party_failed": "a party process failed to start, died or missed its deadline",
        "timeout": "stopped at the time limit",
        "unsupported": "the backend does not serve this task kind",
    }
)

#: Isolation value to what it means for the figures.
ISOLATION = MappingProxyType(
    {
        "process": "each party ran as its own operating-system process holding only its "
        "own data; the harness carried and metered every message",
        "api": "the backend ran inside the harness's own process: its parties were not "
        "isolated from one another by the operating system, so the view-based attacks "
        "only see what the backend chose to route through the session",
    }
)

#: Party role to what a party in that role must not learn.
ROLE_MUST_NOT_LEARN = MappingProxyType(
    {
        "data_holder": "the other holders' patient records",
        "analyst": "any patient's record; only the agreed result",
        "aggregator": "any holder's inputs or the result beyond what it must pass on",
        "provider": "the supplier's model",
        "supplier": "the provider's patients and their features",
        "custodian": "nothing is hidden from the custodian: it holds the data",
        "researcher": "any patient's record; only the released data or answers",
    }
)


def flag_words(flags: str) -> list[tuple[str, str]]:
    """Return ``(flag, meaning)`` for each flag of a comma-separated list."""
    names = [f.strip() for f in flags.split(",") if f.strip()]
    return [(n, FLAGS.get(n, "a flag this report does not know")) for n in names]
