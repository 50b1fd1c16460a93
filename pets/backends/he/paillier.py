"""``paillier``: additively homomorphic encryption (python-paillier with gmpy2)."""

from __future__ import annotations

import math

import gmpy2
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
from pets.backends.he._schemes import PaillierScheme
from pets.backends.he._security import paillier_security_bits
from pets.tasks import design_matrix
from pets.wire import pack, unpack

__all__ = ["Paillier"]

#: Fixed-point bits of features and weights in packed inference.
_SCORE_BITS = 16


class Paillier(HomomorphicBackend):
    """Paillier encryption: sums of fixed-point values packed many to a plaintext, and
    linear scores on packed encrypted features.

    Parameters
    ----------
    n_length : int
        Modulus size in bits. Below 2048 is refused unless ``allow_insecure``.
    allow_insecure : bool
        Permit moduli below 2048 bits (for teaching and benchmarks only).
    precision : int
        Decimal digits kept by the fixed-point encoding of sums.
    slot_bits : int
        Bits per packed value in sums.
    pack : bool
        Many values per plaintext with ``raw_encrypt`` (True), or one ``phe``
        ``EncryptedNumber`` per value (False; the naive layout, for aggregate and train).
    rounds, local_steps, learning_rate, l2
        Federated-averaging knobs for ``train``.
    """

    def __init__(
        self,
        *,
        n_length: int = 2048,
        allow_insecure: bool = False,
        precision: int = 6,
        slot_bits: int = 64,
        pack: bool = True,
        rounds: int = 30,
        local_steps: int = 10,
        learning_rate: float = 4.0,
        l2: float = 1e-4,
    ) -> None:
        self.n_length = n_length
        self.allow_insecure = allow_insecure
        self.precision = precision
        self.slot_bits = slot_bits
        self.pack = pack
        self.rounds = rounds
        self.local_steps = local_steps
        self.learning_rate = learning_rate
        self.l2 = l2

    def _check(self) -> None:
        if self.n_length < 2048 and not self.allow_insecure:
            raise ValueError(
                f"paillier: n_length {self.n_length} is below 2048 bits (under 112-bit "
                "security); pass allow_insecure=true to run it anyway"
            )
        if self.n_length < 512 or self.n_length % 2:
            raise ValueError(
                f"paillier: n_length must be an even number >= 512, got {self.n_length}"
            )
        if not 16 <= self.slot_bits <= self.n_length // 4:
            raise ValueError(f"paillier: slot_bits must be in [16, {self.n_length // 4}]")

    def scheme(self, kind: str) -> PaillierScheme:
        """The Paillier scheme (packing as configured)."""
        self._check()
        return PaillierScheme(
            self.n_length, FixedPoint(self.precision), slot_bits=self.slot_bits, pack=self.pack
        )

    @property
    def capabilities(self) -> Capabilities:
        """Serves aggregate, inference and train; NIST-equivalent security of n_length."""
        self._check()
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset({"aggregate", "inference", "train"}),
            pet_class=PetClass.HE,
            claim=Claim(
                security_bits=paillier_security_bits(self.n_length),
                security_model=SecurityModel.SEMI_HONEST,
                collusion_threshold=1,
                declared_leakage=(
                    "output",
                    "ciphertext sizes",
                    "model scores reveal weights",
                    "weight bound",
                ),
                formal=True,
                notes=(
                    "Holds if the key holder and the aggregator do not collude. Reals are "
                    "rounded to the fixed-point step. In inference the provider learns "
                    "linear scores and a bound on the largest weight."
                ),
            ),
            extra="he",
        )

    def _inference(self, context: PartyContext) -> InferenceOutput | None:
        """Packed linear scores: features of many patients share one plaintext.

        Features are scaled to [0, 1] publicly and encoded as ``x' = round(x·2^16)``. The
        supplier shifts each weight by a bound W so all are non-negative
        (``w' = round((w + W)·2^16)``), raises each packed feature ciphertext to ``w'``,
        multiplies them and adds the packed intercept ``(b + W)·2^32`` to every slot.
        The provider decrypts slot sums, keeps one per patient and removes
        ``W·2^16·Σ x'`` and ``W·2^32`` itself.
        """
        task = context.task
        provider, supplier = task.recipient, task.params["supplier"]
        self._check()
        d = len(task.params["features"])
        if context.name == supplier:
            self._score_packed(context, provider, d)
            return None
        if context.name != provider:
            return None
        from phe import paillier

        with context.phase("setup"):
            public, private = paillier.generate_paillier_keypair(n_length=self.n_length)
        context.send(
            supplier, public.n.to_bytes((public.n.bit_length() + 7) // 8, "big"), tag="public-key"
        )
        x = design_matrix(context.data, task.params["features"])
        with context.phase("encode"):
            xq = np.round(x * 2**_SCORE_BITS).astype(object)
        bound = unpack(context.receive(supplier, tag="weight-bound"))["weight_bound"]
        slot_bits, per_plaintext, width = _layout(public.n, bound, d)
        with context.phase("encrypt"):
            blocks = []
            for start in range(0, len(x), per_plaintext):
                rows = xq[start : start + per_plaintext]
                for j in range(d):
                    plain = sum(int(v) << (k * slot_bits) for k, v in enumerate(rows[:, j]))
                    blocks.append(public.raw_encrypt(plain).to_bytes(width, "big"))
        context.send(supplier, b"".join(blocks), tag="features")
        received = context.receive(supplier, tag="scores")
        with context.phase("decrypt"):
            mask = (1 << slot_bits) - 1
            sums = []
            for i in range(0, len(received), width):
                plain = private.raw_decrypt(int.from_bytes(received[i : i + width], "big"))
                sums.extend((plain >> (k * slot_bits)) & mask for k in range(per_plaintext))
            sums = np.array(sums[: len(x)], dtype=object)
            correction = bound * 2**_SCORE_BITS * xq.sum(axis=1) + bound * 2 ** (2 * _SCORE_BITS)
            linear = (sums - correction).astype(np.float64) / 2 ** (2 * _SCORE_BITS)
            out = InferenceOutput(1.0 / (1.0 + np.exp(-linear)))
        context.reveal("scores", out)
        return out

    def _score_packed(self, context: PartyContext, provider: str, d: int) -> None:
        """The supplier's part: tell the provider the weight bound, then turn packed
        encrypted features into packed encrypted shifted scores."""
        from phe import paillier

        model = context.data
        bound = math.ceil(float(max(np.max(np.abs(model.coef)), abs(model.intercept)))) + 1
        context.send(provider, pack({"weight_bound": bound}), tag="weight-bound")
        key = paillier.PaillierPublicKey(
            int.from_bytes(context.receive(provider, tag="public-key"), "big")
        )
        slot_bits, per_plaintext, width = _layout(key.n, bound, d)
        received = context.receive(provider, tag="features")
        with context.phase("compute"):
            nsquare = gmpy2.mpz(key.nsquare)
            shifted = [round(float(w + bound) * 2**_SCORE_BITS) for w in model.coef]
            intercept = round(float(model.intercept + bound) * 2 ** (2 * _SCORE_BITS))
            cts = [
                gmpy2.mpz(int.from_bytes(received[i : i + width], "big"))
                for i in range(0, len(received), width)
            ]
            # The supplier does not know how many patients the last block holds, so the
            # intercept goes into every slot; the provider keeps one slot per patient.
            packed_intercept = sum(intercept << (k * slot_bits) for k in range(per_plaintext))
            out_blocks = []
            for b in range(len(cts) // d):
                total = gmpy2.mpz(key.raw_encrypt(packed_intercept))
                for j in range(d):
                    total = total * gmpy2.powmod(cts[b * d + j], shifted[j], nsquare) % nsquare
                out_blocks.append(int(total).to_bytes(width, "big"))
        context.send(provider, b"".join(out_blocks), tag="scores")


def _layout(n: int, bound: int, d: int) -> tuple[int, int, int]:
    """Slot bits, patients per plaintext and ciphertext bytes of packed scores under the
    modulus ``n``, for ``d`` features and weights bounded by ``bound`` (all public to
    both parties once the bound is sent)."""
    slot_bits = 2 * _SCORE_BITS + math.ceil(math.log2(2 * bound * (d + 1))) + 2
    per_plaintext = (n.bit_length() - 2) // slot_bits
    width = ((n * n).bit_length() + 7) // 8
    return slot_bits, per_plaintext, width
