"""Additively homomorphic schemes behind one interface, for secure sums.

Each scheme turns a key holder's key pair into public bytes, lets any party encrypt a
vector into bytes, lets a party without the secret key add ciphertexts, and lets the
key holder decrypt. ``pack=True`` fills every plaintext (CKKS/BFV slots; several
fixed-point values per Paillier plaintext); ``pack=False`` encrypts one value per
ciphertext, the naive layout kept for measuring the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pets.backends.he._packing import FixedPoint, SlotPacker
from pets.wire import join_frames, split_frames

__all__ = ["BfvScheme", "CkksScheme", "PaillierScheme"]


def _chunks(values: np.ndarray, size: int) -> list[np.ndarray]:
    return [values[i : i + size] for i in range(0, len(values), size)] or [values[:0]]


class _TensealScheme:
    """What CKKS and BFV share: public contexts, adding frame by frame, decrypting."""

    def _load_vector(self, context: Any, frame: bytes) -> Any:  # pragma: no cover
        raise NotImplementedError

    def load_public(self, public: bytes) -> Any:
        import tenseal as ts

        return ts.context_from(public)

    def public_of(self, secret: Any) -> Any:
        """What the key holder encrypts with: its own context."""
        return secret

    def add(self, context: Any, ciphertexts: list[bytes]) -> bytes:
        totals = None
        for payload in ciphertexts:
            vectors = [self._load_vector(context, f) for f in split_frames(payload)]
            totals = (
                vectors if totals is None else [a + b for a, b in zip(totals, vectors, strict=True)]
            )
        return join_frames([v.serialize() for v in totals or []])

    def _decrypt_frames(self, context: Any, ciphertext: bytes) -> list[Any]:
        out: list[Any] = []
        for frame in split_frames(ciphertext):
            out.extend(self._load_vector(context, frame).decrypt())
        return out


@dataclass
class CkksScheme(_TensealScheme):
    """CKKS (TenSEAL): approximate real arithmetic, ``degree / 2`` slots per ciphertext."""

    degree: int
    chain: list[int]
    scale_bits: int
    pack: bool = True

    def keygen(self) -> tuple[Any, bytes]:
        import tenseal as ts

        context = ts.context(ts.SCHEME_TYPE.CKKS, self.degree, coeff_mod_bit_sizes=self.chain)
        context.global_scale = 2.0**self.scale_bits
        return context, context.serialize(save_secret_key=False)

    def encrypt(self, context: Any, values: np.ndarray) -> bytes:
        import tenseal as ts

        size = self.degree // 2 if self.pack else 1
        return join_frames(
            [ts.ckks_vector(context, c.tolist()).serialize() for c in _chunks(values, size)]
        )

    def _load_vector(self, context: Any, frame: bytes) -> Any:
        import tenseal as ts

        return ts.ckks_vector_from(context, frame)

    def decrypt(self, context: Any, ciphertext: bytes, length: int, addends: int) -> np.ndarray:
        return np.array(self._decrypt_frames(context, ciphertext)[:length])


@dataclass
class BfvScheme(_TensealScheme):
    """BFV (TenSEAL): exact integers mod a batching prime; reals in fixed point."""

    degree: int
    plain_modulus: int
    fixed: FixedPoint
    pack: bool = True

    def keygen(self) -> tuple[Any, bytes]:
        import tenseal as ts

        context = ts.context(ts.SCHEME_TYPE.BFV, self.degree, plain_modulus=self.plain_modulus)
        return context, context.serialize(save_secret_key=False)

    def encrypt(self, context: Any, values: np.ndarray) -> bytes:
        import tenseal as ts

        ints = self.fixed.encode(values)
        bound = self.plain_modulus // 2
        if any(abs(v) >= bound for v in ints):
            raise ValueError("a fixed-point value exceeds the BFV plain modulus; lower precision")
        size = self.degree if self.pack else 1
        return join_frames(
            [
                ts.bfv_vector(context, ints[i : i + size]).serialize()
                for i in range(0, max(len(ints), 1), size)
            ]
        )

    def _load_vector(self, context: Any, frame: bytes) -> Any:
        import tenseal as ts

        return ts.bfv_vector_from(context, frame)

    def decrypt(self, context: Any, ciphertext: bytes, length: int, addends: int) -> np.ndarray:
        return self.fixed.decode(self._decrypt_frames(context, ciphertext)[:length])


@dataclass
class PaillierScheme:
    """Paillier (python-paillier with gmpy2): additively homomorphic over Z_n.

    Packed: fixed-point integers in ``slot_bits``-bit slots, many per plaintext, encrypted
    with ``raw_encrypt`` and added by multiplying ciphertexts mod n². Unpacked: one
    ``EncryptedNumber`` per value through phe's own float encoding.
    """

    n_length: int
    fixed: FixedPoint
    slot_bits: int = 64
    max_addends: int = 64
    pack: bool = True

    def keygen(self) -> tuple[Any, bytes]:
        from phe import paillier

        public, private = paillier.generate_paillier_keypair(n_length=self.n_length)
        return private, public.n.to_bytes((public.n.bit_length() + 7) // 8, "big")

    def load_public(self, public: bytes) -> Any:
        from phe import paillier

        return paillier.PaillierPublicKey(int.from_bytes(public, "big"))

    def public_of(self, secret: Any) -> Any:
        """What the key holder encrypts with: the public half of its key pair."""
        return secret.public_key

    def _numbers_to_bytes(self, public: Any, numbers: list[Any]) -> bytes:
        """Unpacked layout: each ``EncryptedNumber`` as ciphertext and 4-byte exponent."""
        width = self._width(public)
        return join_frames(
            [
                c.ciphertext(be_secure=False).to_bytes(width, "big")
                + c.exponent.to_bytes(4, "big", signed=True)
                for c in numbers
            ]
        )

    def _numbers_from_bytes(self, public: Any, payload: bytes) -> list[Any]:
        """Reverse :meth:`_numbers_to_bytes`."""
        from phe import EncryptedNumber

        width = self._width(public)
        return [
            EncryptedNumber(
                public,
                int.from_bytes(f[:width], "big"),
                int.from_bytes(f[width:], "big", signed=True),
            )
            for f in split_frames(payload)
        ]

    def _packer(self, n: int) -> SlotPacker:
        return SlotPacker.for_modulus(n.bit_length(), self.slot_bits, self.max_addends)

    def _width(self, public: Any) -> int:
        return (public.nsquare.bit_length() + 7) // 8

    def encrypt(self, public: Any, values: np.ndarray) -> bytes:
        if not self.pack:
            return self._numbers_to_bytes(public, [public.encrypt(float(v)) for v in values])
        plaintexts = self._packer(public.n).pack(self.fixed.encode(values))
        width = self._width(public)
        return b"".join(public.raw_encrypt(p).to_bytes(width, "big") for p in plaintexts)

    def add(self, public: Any, ciphertexts: list[bytes]) -> bytes:
        import gmpy2

        width = self._width(public)
        nsquare = gmpy2.mpz(public.nsquare)
        if not self.pack:
            totals = None
            for payload in ciphertexts:
                numbers = self._numbers_from_bytes(public, payload)
                totals = (
                    numbers
                    if totals is None
                    else [a + b for a, b in zip(totals, numbers, strict=True)]
                )
            return self._numbers_to_bytes(public, totals or [])
        totals = None
        for payload in ciphertexts:
            numbers = [
                gmpy2.mpz(int.from_bytes(payload[i : i + width], "big"))
                for i in range(0, len(payload), width)
            ]
            totals = (
                numbers
                if totals is None
                else [a * b % nsquare for a, b in zip(totals, numbers, strict=True)]
            )
        return b"".join(int(c).to_bytes(width, "big") for c in totals or [])

    def decrypt(self, private: Any, ciphertext: bytes, length: int, addends: int) -> np.ndarray:
        public = private.public_key
        width = self._width(public)
        if not self.pack:
            return np.array(
                [private.decrypt(c) for c in self._numbers_from_bytes(public, ciphertext)]
            )
        if addends > self.max_addends:
            raise ValueError(f"more than {self.max_addends} addends overflow the packing")
        packed = [
            private.raw_decrypt(int.from_bytes(ciphertext[i : i + width], "big"))
            for i in range(0, len(ciphertext), width)
        ]
        return self.fixed.decode(self._packer(public.n).unpack(packed, length, addends))
