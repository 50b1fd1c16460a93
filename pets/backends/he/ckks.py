"""``tenseal-ckks``: approximate homomorphic arithmetic on real numbers (TenSEAL CKKS)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pets.api import (
    Capabilities,
    Claim,
    InferenceOutput,
    PetClass,
    SecurityModel,
    Task,
)
from pets.backends.he._common import HomomorphicBackend
from pets.backends.he._schemes import CkksScheme
from pets.backends.he._security import (
    HE_STANDARD_MAX_BITS,
    check_poly_modulus_degree,
    ckks_chain,
    lattice_security_bits,
)
from pets.session import Session
from pets.tasks import design_matrix
from pets.wire import join_frames, split_frames

__all__ = ["TensealCKKS", "sigmoid_polynomial"]

SIGMOID_MODES = ("poly", "none")


def sigmoid_polynomial(degree: int, half_range: float) -> np.ndarray:
    """Least-squares polynomial fit of the sigmoid on [-half_range, half_range].

    Returns power-basis coefficients, constant first (public; fitted on a grid, not data).
    """
    grid = np.linspace(-half_range, half_range, 4001)
    fit = np.polynomial.Polynomial.fit(grid, 1.0 / (1.0 + np.exp(-grid)), degree)
    return fit.convert().coef


class TensealCKKS(HomomorphicBackend):
    """Homomorphic encryption with CKKS (TenSEAL): sums, scores and federated updates on
    encrypted real numbers.

    Parameters
    ----------
    poly_modulus_degree : int or None
        Ring degree (power of two, 1024-32768). None picks the smallest degree whose
        128-bit limit fits the chain the circuit needs (at least 8192).
    coeff_mod_bit_sizes : list of int or None
        Coefficient-modulus chain. None builds ``[60] + [scale_bits] * depth + [60]`` for
        the task's circuit depth.
    scale_bits : int
        log2 of the encoding scale.
    pack : bool
        Fill every slot (True) or encrypt one value per ciphertext (False; the naive
        layout, for aggregate and train).
    sigmoid : str
        ``poly``: the supplier evaluates a polynomial approximation of the sigmoid under
        encryption; ``none``: the provider decrypts the linear score and applies the
        sigmoid itself.
    sigmoid_degree : int
        Degree of the approximation.
    sigmoid_range : float
        The approximation is fitted on [-sigmoid_range, sigmoid_range] (a public choice;
        linear scores outside it are approximated badly).
    rounds, local_steps, learning_rate, l2
        Federated-averaging knobs for ``train`` (see :class:`pets.backends.federated.FedAvg`).
    """

    def __init__(
        self,
        *,
        poly_modulus_degree: int | None = None,
        coeff_mod_bit_sizes: Sequence[int] | None = None,
        scale_bits: int = 40,
        pack: bool = True,
        sigmoid: str = "poly",
        sigmoid_degree: int = 7,
        sigmoid_range: float = 6.0,
        rounds: int = 30,
        local_steps: int = 5,
        learning_rate: float = 1.0,
        l2: float = 1e-4,
    ) -> None:
        self.poly_modulus_degree = poly_modulus_degree
        self.coeff_mod_bit_sizes = coeff_mod_bit_sizes
        self.scale_bits = scale_bits
        self.pack = pack
        self.sigmoid = sigmoid
        self.sigmoid_degree = sigmoid_degree
        self.sigmoid_range = sigmoid_range
        self.rounds = rounds
        self.local_steps = local_steps
        self.learning_rate = learning_rate
        self.l2 = l2

    def _check(self) -> None:
        if self.poly_modulus_degree is not None:
            check_poly_modulus_degree(self.poly_modulus_degree, "tenseal-ckks")
        if self.sigmoid not in SIGMOID_MODES:
            raise ValueError(f"tenseal-ckks: sigmoid {self.sigmoid!r}; allowed: poly, none")
        if not 20 <= self.scale_bits <= 60:
            raise ValueError(f"tenseal-ckks: scale_bits must be in [20, 60], got {self.scale_bits}")
        if self.sigmoid_degree < 1:
            raise ValueError("tenseal-ckks: sigmoid_degree must be at least 1")

    def depth(self, kind: str) -> int:
        """Multiplicative depth of the circuit for task ``kind``.

        Adding needs none, but CKKS keeps one level to hold the scale. Inference needs one
        level for the weights and ceil(log2(degree + 1)) for TenSEAL's polynomial
        evaluation (measured: degree 3 fits 2 levels, 5 and 7 fit 3, 9 needs 4).
        """
        if kind != "inference":
            return 1
        if self.sigmoid == "none":
            return 1
        return 1 + math.ceil(math.log2(self.sigmoid_degree + 1))

    def chain_and_degree(self, kind: str) -> tuple[list[int], int]:
        """Return the coefficient-modulus chain and ring degree used for ``kind``.

        Raises
        ------
        ValueError
            The chain is too short for the circuit, or too long for the degree.
        """
        self._check()
        depth = self.depth(kind)
        if self.poly_modulus_degree is not None:
            degree = self.poly_modulus_degree
        else:
            wanted = sum(self.coeff_mod_bit_sizes or [60, *[self.scale_bits] * depth, 60])
            degree = next(
                (d for d, t in HE_STANDARD_MAX_BITS.items() if d >= 8192 and t[128] >= wanted),
                32768,
            )
        chain = ckks_chain(degree, depth, self.scale_bits, self.coeff_mod_bit_sizes, "tenseal-ckks")
        return chain, degree

    def scheme(self, kind: str) -> CkksScheme:
        """The CKKS scheme configured for ``kind``."""
        chain, degree = self.chain_and_degree(kind)
        return CkksScheme(degree, chain, self.scale_bits, pack=self.pack)

    @property
    def capabilities(self) -> Capabilities:
        """Serves aggregate, inference and train; semi-honest, security from the HE
        standard tables for the chosen parameters."""
        chain, degree = self.chain_and_degree("aggregate")
        bits = lattice_security_bits(degree, sum(chain))
        return Capabilities(
            task_kinds=frozenset({"aggregate", "inference", "train"}),
            pet_class=PetClass.HE,
            claim=Claim(
                security_bits=bits,
                security_model=SecurityModel.SEMI_HONEST,
                collusion_threshold=1,
                declared_leakage=("output", "ciphertext sizes", "model scores reveal weights"),
                formal=True,
                notes=(
                    "Holds if the key holder and the aggregator do not collude. Approximate "
                    "arithmetic: results carry small errors. In federated training the key "
                    "holder shares decrypted sums with the aggregator, who holds the "
                    "ciphertexts: for CKKS this can expose the secret key (Li and "
                    "Micciancio, 2021) unless noise is added before sharing."
                ),
            ),
            extra="he",
        )

    def _inference(self, task: Task, session: Session) -> InferenceOutput:
        import tenseal as ts

        provider, supplier = task.recipient, task.params["supplier"]
        scheme = self.scheme("inference")
        slots = scheme.degree // 2
        with session.as_party(provider) as party:
            with session.phase("setup"):
                context, public = scheme.keygen()
            party.send(supplier, public, tag="public-key")
            with session.phase("encode"):
                x = design_matrix(party.data, task.params["features"])
            with session.phase("encrypt"):
                chunks = [
                    join_frames(
                        [
                            ts.ckks_vector(context, x[s : s + slots, j].tolist()).serialize()
                            for j in range(x.shape[1])
                        ]
                    )
                    for s in range(0, len(x), slots)
                ]
            party.send(supplier, join_frames(chunks), tag="features")
            n_patients = len(x)
        coefficients = sigmoid_polynomial(self.sigmoid_degree, self.sigmoid_range)
        with session.as_party(supplier) as party:
            model = party.data
            public_context = ts.context_from(party.receive(provider, tag="public-key"))
            received = party.receive(provider, tag="features")
            with session.phase("compute"):
                scores = []
                for chunk in split_frames(received):
                    columns = [ts.ckks_vector_from(public_context, f) for f in split_frames(chunk)]
                    score = columns[0] * float(model.coef[0])
                    for column, weight in zip(columns[1:], model.coef[1:], strict=True):
                        score += column * float(weight)
                    score += float(model.intercept)
                    if self.sigmoid == "poly":
                        score = score.polyval(coefficients.tolist())
                    scores.append(score.serialize())
            party.send(provider, join_frames(scores), tag="scores")
        with session.as_party(provider) as party:
            received = party.receive(supplier, tag="scores")
            with session.phase("decrypt"):
                values = np.concatenate(
                    [ts.ckks_vector_from(context, f).decrypt() for f in split_frames(received)]
                )[:n_patients]
                if self.sigmoid == "none":
                    values = 1.0 / (1.0 + np.exp(-values))
                out = InferenceOutput(np.clip(values, 0.0, 1.0))
            party.reveal("scores", out)
        return out
