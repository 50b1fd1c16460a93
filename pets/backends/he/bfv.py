"""``tenseal-bfv``: exact homomorphic arithmetic on integers (TenSEAL BFV), reals in
fixed point."""

from __future__ import annotations

import math

import numpy as np

from pets.api import (
    Capabilities,
    Claim,
    InferenceOutput,
    PartyContext,
    PetClass,
    SecurityModel,
)
from pets.backends.he._common import HomomorphicBackend
from pets.backends.he._packing import FixedPoint
from pets.backends.he._schemes import BfvScheme
from pets.backends.he._security import (
    HE_STANDARD_MAX_BITS,
    batching_prime,
    check_poly_modulus_degree,
)
from pets.tasks import design_matrix
from pets.wire import join_frames, split_frames

__all__ = ["TensealBFV"]


class TensealBFV(HomomorphicBackend):
    """Homomorphic encryption with BFV (TenSEAL): exact sums of fixed-point integers and
    linear scores.

    Parameters
    ----------
    poly_modulus_degree : int
        Ring degree; the coefficient modulus is SEAL's default for 128-bit security.
    plain_modulus_bits : int
        Size of the batching prime that bounds every encrypted value (|v| < p / 2).
    precision : int
        Decimal digits kept by the fixed-point encoding of real numbers.
    pack : bool
        Fill every slot (True) or one value per ciphertext (False; aggregate only).
    """

    def __init__(
        self,
        *,
        poly_modulus_degree: int = 8192,
        plain_modulus_bits: int = 50,
        precision: int = 4,
        pack: bool = True,
    ) -> None:
        self.poly_modulus_degree = poly_modulus_degree
        self.plain_modulus_bits = plain_modulus_bits
        self.precision = precision
        self.pack = pack

    def noise_budget_check(self, kind: str) -> None:
        """Raise ValueError when the parameters leave too little noise budget.

        Estimate: the budget is log2(q) − log2(t) bits; a sum needs about 20 bits of
        margin, a plaintext multiplication a further log2(t) + log2(N) bits. (Measured:
        with a 50-bit t, degree 4096 multiplies to wrong results; 8192 is correct.)
        """
        check_poly_modulus_degree(self.poly_modulus_degree, "tenseal-bfv")
        if not 17 <= self.plain_modulus_bits <= 60:
            raise ValueError(
                f"tenseal-bfv: plain_modulus_bits must be in [17, 60], got "
                f"{self.plain_modulus_bits}"
            )
        q_bits = HE_STANDARD_MAX_BITS[self.poly_modulus_degree][128]
        budget = q_bits - self.plain_modulus_bits
        need = 20
        if kind == "inference":
            need += self.plain_modulus_bits + int(math.log2(self.poly_modulus_degree))
        if budget < need:
            raise ValueError(
                f"tenseal-bfv: poly_modulus_degree {self.poly_modulus_degree} with a "
                f"{self.plain_modulus_bits}-bit plain modulus leaves about {budget} bits of "
                f"noise budget; {kind} needs about {need}. Raise poly_modulus_degree or "
                "lower plain_modulus_bits."
            )

    def scheme(self, kind: str) -> BfvScheme:
        """The BFV scheme configured for ``kind``."""
        self.noise_budget_check(kind)
        prime = batching_prime(self.poly_modulus_degree, self.plain_modulus_bits)
        return BfvScheme(
            self.poly_modulus_degree, prime, FixedPoint(self.precision), pack=self.pack
        )

    @property
    def capabilities(self) -> Capabilities:
        """Serves aggregate and inference; semi-honest, 128-bit parameters."""
        self.noise_budget_check("aggregate")
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset({"aggregate", "inference"}),
            pet_class=PetClass.HE,
            claim=Claim(
                security_bits=128,
                security_model=SecurityModel.SEMI_HONEST,
                collusion_threshold=1,
                declared_leakage=("output", "ciphertext sizes", "model scores reveal weights"),
                formal=True,
                notes=(
                    "Holds if the key holder and the aggregator do not collude. Exact "
                    "integer arithmetic; reals are rounded to the fixed-point step. The "
                    "provider learns linear scores."
                ),
            ),
            extra="he",
        )

    def _inference(self, context: PartyContext) -> InferenceOutput | None:
        """Linear scores on BFV-encrypted fixed-point features.

        The provider (the recipient) holds the key and sends its patients' features,
        column by column (patients in slots); the supplier multiplies them by its
        fixed-point weights, adds the intercept and sends the scores back; the provider
        decrypts and applies the sigmoid.
        """
        import tenseal as ts

        task = context.task
        provider, supplier = task.recipient, task.params["supplier"]
        scheme = self.scheme("inference")
        fixed = scheme.fixed
        if context.name == supplier:
            model = context.data
            public_context = ts.context_from(context.receive(provider, tag="public-key"))
            received = context.receive(provider, tag="features")
            with context.phase("compute"):
                weights = fixed.encode(model.coef)
                intercept = round(model.intercept * 10 ** (2 * fixed.digits))
                scores = []
                for chunk in split_frames(received):
                    vectors = [ts.bfv_vector_from(public_context, f) for f in split_frames(chunk)]
                    score = vectors[0] * ([weights[0]] * vectors[0].size())
                    for vector, weight in zip(vectors[1:], weights[1:], strict=True):
                        score += vector * ([weight] * vector.size())
                    score += [intercept] * score.size()
                    scores.append(score.serialize())
            context.send(provider, join_frames(scores), tag="scores")
            return None
        if context.name != provider:
            return None
        slots = scheme.degree
        with context.phase("setup"):
            secret, public = scheme.keygen()
        context.send(supplier, public, tag="public-key")
        with context.phase("encode"):
            x = design_matrix(context.data, task.params["features"])
            columns = [fixed.encode(x[:, j]) for j in range(x.shape[1])]
        with context.phase("encrypt"):
            chunks = [
                join_frames([ts.bfv_vector(secret, c[s : s + slots]).serialize() for c in columns])
                for s in range(0, len(x), slots)
            ]
        context.send(supplier, join_frames(chunks), tag="features")
        received = context.receive(supplier, tag="scores")
        with context.phase("decrypt"):
            linear = np.concatenate(
                [
                    np.array(ts.bfv_vector_from(secret, f).decrypt(), dtype=np.float64)
                    for f in split_frames(received)
                ]
            )[: len(x)] / 10.0 ** (2 * fixed.digits)
            out = InferenceOutput(1.0 / (1.0 + np.exp(-linear)))
        context.reveal("scores", out)
        return out
