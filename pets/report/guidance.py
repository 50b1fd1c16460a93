"""Plain-language text per PET class, following the ICO's guidance.

For each PET class the report answers the four questions the ICO's
"Privacy-enhancing technologies (PETs)" guidance (June 2023) asks of every PET: what it
is and does; how it helps with data protection compliance; what an organisation needs
to know to implement it; and its risks and known weaknesses. It says whether the class
gives input privacy, output privacy or both. Releases are read against the three
indicators of identifiability in the ICO's "Anonymisation, pseudonymisation and privacy
enhancing technologies" guidance. The text is ours; the guidance is cited by title.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "ANONYMISATION_GUIDANCE",
    "IDENTIFIABILITY_INDICATORS",
    "PETS_GUIDANCE",
    "PET_GUIDANCE",
    "PetGuidance",
]

#: The guidance documents the report cites, by title.
PETS_GUIDANCE = "Privacy-enhancing technologies (PETs), ICO, June 2023"
ANONYMISATION_GUIDANCE = (
    "Anonymisation, pseudonymisation and privacy enhancing technologies guidance, ICO, 2025"
)

#: The anonymisation guidance's indicators of identifiability, and the release attack
#: that measures each here.
IDENTIFIABILITY_INDICATORS = MappingProxyType(
    {
        "singling_out": (
            "Singling out",
            "Can someone pick out one person's record from the release? Measured by "
            "predicates that match exactly one real patient.",
        ),
        "linkability": (
            "Linkability",
            "Can someone join records about the same person across two sources? Measured "
            "by linking the release to auxiliary quasi-identifiers an intruder holds.",
        ),
        "attribute_inference": (
            "Inference",
            "Can someone deduce a sensitive value about a person from the release and "
            "what they already know? Measured by guessing a held-back attribute.",
        ),
    }
)


@dataclass(frozen=True)
class PetGuidance:
    """What the report says about one PET class.

    Attributes
    ----------
    pet_class : str
        The class as records name it (``dp``, ``he``, ...).
    title : str
        Its name in plain language.
    in_ico_guidance : bool
        True for the eight PETs the ICO's guidance covers one by one.
    protects : str
        ``input privacy``, ``output privacy``, ``input and output privacy`` or
        ``neither``.
    what : str
        What it is and what it does.
    compliance : str
        How it helps with data protection compliance.
    implement : str
        What an organisation needs to know to implement it.
    risks : str
        Its risks and known weaknesses.
    standards : str
        Standards the guidance names, if any.
    """

    pet_class: str
    title: str
    in_ico_guidance: bool
    protects: str
    what: str
    compliance: str
    implement: str
    risks: str
    standards: str = ""


_ENTRIES = (
    PetGuidance(
        "baseline",
        "Baselines: no PET (plaintext pooling, local-only, hashed identifiers)",
        False,
        "neither",
        "The comparison points: every party sends its records to one place that "
        "computes the answer, or each works alone, or identifiers are replaced by "
        "hashes. They show what a PET must improve on.",
        "None by themselves. Pooling needs a lawful basis and a data-sharing agreement "
        "for every flow of personal data. Hashed or salted identifiers are "
        "pseudonymised data, and pseudonymised data is still personal data.",
        "Nothing beyond today's controls: access control, agreements, audit.",
        "Every receiving party sees the raw inputs. A hash of an NHS number can be "
        "reversed by hashing every valid number, which is why the dictionary attack "
        "succeeds against unkeyed hashes.",
    ),
    PetGuidance(
        "sdc",
        "Statistical disclosure control (suppression, rounding, k-anonymity, output checks)",
        False,
        "output privacy",
        "Rules applied to what is published: small cells are withheld, counts rounded, "
        "quasi-identifiers generalised until each combination covers at least k people. "
        "It is how trusted research environments check outputs today.",
        "It lowers the chance that a published figure identifies someone, which the "
        "anonymisation guidance asks controllers to assess. It carries no formal "
        "guarantee, so the assessment rests on tests like the ones in this report.",
        "Thresholds (the minimum cell size, the rounding base, k) are choices a "
        "controller must justify and review; they must hold across every output, not "
        "one table at a time.",
        "Differencing: two permitted outputs that differ by a few people can give "
        "those people away, even when each output passes the rules on its own.",
    ),
    PetGuidance(
        "he",
        "Homomorphic encryption",
        True,
        "input privacy",
        "Data is encrypted before it leaves its holder, and the computation runs on the "
        "ciphertexts; only the key holder can decrypt the result. Schemes differ in "
        "what they can compute: partially homomorphic (additions only, like Paillier), "
        "somewhat or fully homomorphic (additions and multiplications, like BFV and "
        "CKKS; CKKS is approximate).",
        "It lets a party compute on data it is never able to read, which supports "
        "security of processing and data minimisation for the computing party.",
        "Choose the scheme by the operations the task needs; manage the secret key and "
        "the evaluation keys; choose parameters for a stated security level. Expect "
        "large ciphertexts and slow operations.",
        "It protects inputs during the computation, not the output: the decrypted "
        "result reveals whatever the result reveals. Cost in time and bytes can be "
        "orders of magnitude above plaintext.",
    ),
    PetGuidance(
        "mpc",
        "Secure multi-party computation",
        True,
        "input privacy",
        "Several parties compute a joint result from their private inputs by exchanging "
        "secret shares or masked values, so that no party learns more than the result "
        "and its own input.",
        "Parties can pool analysis without pooling records, so no organisation becomes "
        "a controller of the others' raw data for that computation.",
        "The security model (honest-but-curious or malicious parties) and how many "
        "parties may collude are part of the guarantee; parties must be independent for "
        "it to mean anything. Network latency and rounds matter as much as compute.",
        "Compute and communication costs are high; the output itself is not protected "
        "and can reveal individuals just as a plaintext answer would.",
        "IEEE 2842-2021, ITU-T X.1770, and the IETF Privacy Preserving Measurement (PPM) draft.",
    ),
    PetGuidance(
        "psi",
        "Private set intersection",
        True,
        "input privacy",
        "Two parties find the records they have in common (or only how many) without "
        "either showing the other its full list.",
        "Each party learns only the overlap it needs, not the other's whole list: data "
        "minimisation for linkage.",
        "Matching depends on identifiers being exactly equal, so identifiers must be "
        "cleaned and formatted the same way on both sides first.",
        "The intersection, or its size, is revealed by design; repeated queries with "
        "crafted lists can probe whether a person is in the other party's list.",
    ),
    PetGuidance(
        "dp",
        "Differential privacy",
        True,
        "output privacy",
        "Calibrated random noise is added so that the output is almost the same whether "
        "or not any one person's record is included. Epsilon bounds, in the worst case, "
        "how much anyone can learn about one person from the output; smaller is "
        "stronger. It can be used for queries answered one at a time (interactive) or "
        "for a one-off release (non-interactive), with noise added centrally (global) "
        "or by each holder (local).",
        "It gives a measurable, provable limit on what outputs reveal about any "
        "individual, which supports the assessment of identifiability the anonymisation "
        "guidance asks for.",
        "Set a total privacy budget and account for every query against it; choose the "
        "privacy unit (here the patient); expect less accurate answers for small groups.",
        "Accuracy falls as epsilon falls, most for small cells and rare groups. A large "
        "epsilon gives little protection. An implementation can fail to deliver its "
        "claim, which is why this report audits epsilon from below.",
    ),
    PetGuidance(
        "synthetic",
        "Synthetic data",
        True,
        "output privacy",
        "A model is fitted to the real records and new, artificial records are drawn "
        "from it, keeping the statistical patterns the model captured.",
        "Researchers can work with data that contains no real person's record, which can "
        "reduce identifiability. The guidance asks separately whether synthetic data is "
        "anonymous: it depends on how closely it reproduces real people.",
        "Decide which patterns must be kept and check utility against them; pair the "
        "generator with differential privacy where outliers need protection.",
        "More utility means more risk of revealing information about real people. Some "
        "generators are open to model inversion and membership inference. "
        "Differential privacy protects outliers at a cost in utility.",
    ),
    PetGuidance(
        "federated",
        "Federated learning",
        True,
        "input privacy",
        "Each site trains a model on its own records and shares only model updates; a "
        "coordinator combines the updates into one model.",
        "Records stay where they are; only parameters move, which supports data minimisation.",
        "Plan for sites whose data differ; decide who coordinates and what they see.",
        "Model updates can leak training data, so federated learning alone may not be "
        "enough: combine it with secure aggregation or differential privacy. The "
        "trained model itself can be attacked for membership.",
    ),
    PetGuidance(
        "remote",
        "Remote data science",
        False,
        "input privacy",
        "The analyst sends code to where the data is and receives only approved "
        "results, never the rows.",
        "Data stays in the custodian's environment, as in a trusted research environment.",
        "The custodian must review what leaves, as with any output check.",
        "What leaves is whatever the approved result reveals; approval is a human or "
        "rule-based control with no formal guarantee.",
    ),
)

#: Guidance text by PET class.
PET_GUIDANCE = MappingProxyType({g.pet_class: g for g in _ENTRIES})
