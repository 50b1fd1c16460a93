"""Security levels and parameter checks for the HE backends.

CKKS/BFV: the largest total coefficient-modulus size (bits) for each polynomial degree
at 128, 192 and 256 bits of classical security, from the Homomorphic Encryption
Standard (2018) tables for a ternary secret, which Microsoft SEAL enforces.
Paillier: NIST SP 800-57 equivalences for factoring-based moduli.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import MappingProxyType

import gmpy2

__all__ = [
    "HE_STANDARD_MAX_BITS",
    "PAILLIER_SECURITY_BITS",
    "batching_prime",
    "check_poly_modulus_degree",
    "ckks_chain",
    "lattice_security_bits",
    "paillier_security_bits",
]

#: Polynomial degree -> {security bits: max total coefficient modulus bits}.
HE_STANDARD_MAX_BITS = MappingProxyType(
    {
        1024: {128: 27, 192: 19, 256: 14},
        2048: {128: 54, 192: 37, 256: 29},
        4096: {128: 109, 192: 75, 256: 58},
        8192: {128: 218, 192: 152, 256: 118},
        16384: {128: 438, 192: 305, 256: 237},
        32768: {128: 881, 192: 611, 256: 476},
    }
)

#: Paillier/RSA modulus bits -> security bits (NIST SP 800-57 part 1).
PAILLIER_SECURITY_BITS = MappingProxyType({1024: 80, 2048: 112, 3072: 128, 7680: 192, 15360: 256})


def check_poly_modulus_degree(degree: int, backend: str) -> None:
    """Raise ValueError unless ``degree`` is a supported power of two."""
    if degree <= 0 or degree & (degree - 1):
        raise ValueError(
            f"{backend}: poly_modulus_degree must be a power of two, got {degree}; "
            f"allowed: {', '.join(map(str, HE_STANDARD_MAX_BITS))}"
        )
    if degree not in HE_STANDARD_MAX_BITS:
        raise ValueError(
            f"{backend}: poly_modulus_degree {degree} is outside the HE standard tables; "
            f"allowed: {', '.join(map(str, HE_STANDARD_MAX_BITS))}"
        )


def lattice_security_bits(degree: int, total_bits: int) -> int:
    """Return the classical security level (0 if below 128) of a CKKS/BFV parameter set."""
    table = HE_STANDARD_MAX_BITS[degree]
    return max((level for level, limit in table.items() if total_bits <= limit), default=0)


def ckks_chain(
    degree: int,
    depth: int,
    scale_bits: int,
    coeff_mod_bit_sizes: Sequence[int] | None,
    backend: str,
) -> list[int]:
    """Return the CKKS coefficient-modulus chain for a circuit of multiplicative ``depth``.

    With ``coeff_mod_bit_sizes`` None the chain is ``[60] + [scale_bits] * depth + [60]``.
    A given chain is checked: it needs ``depth`` middle primes. Either way the total must
    fit the 128-bit table for ``degree``.

    Raises
    ------
    ValueError
        The chain is too short for the depth or too long for the degree; the message
        says which degree or chain would work.
    """
    check_poly_modulus_degree(degree, backend)
    chain = list(coeff_mod_bit_sizes) if coeff_mod_bit_sizes else [60, *[scale_bits] * depth, 60]
    if len(chain) - 2 < depth:
        raise ValueError(
            f"{backend}: coeff_mod_bit_sizes {chain} allows {len(chain) - 2} multiplications "
            f"but the circuit needs depth {depth}: give at least {depth + 2} primes, e.g. "
            f"{[60, *[scale_bits] * depth, 60]}"
        )
    limit = HE_STANDARD_MAX_BITS[degree][128]
    if sum(chain) > limit:
        bigger = next((d for d, t in HE_STANDARD_MAX_BITS.items() if t[128] >= sum(chain)), None)
        hint = f"use poly_modulus_degree={bigger}" if bigger else "use a shorter chain"
        raise ValueError(
            f"{backend}: coeff_mod_bit_sizes {chain} total {sum(chain)} bits, above the "
            f"{limit} bits allowed at 128-bit security for degree {degree}: {hint}"
        )
    return chain


def paillier_security_bits(n_length: int) -> int:
    """Return the NIST-equivalent security bits of a Paillier modulus of ``n_length`` bits."""
    return max((s for bits, s in PAILLIER_SECURITY_BITS.items() if n_length >= bits), default=0)


def batching_prime(degree: int, bits: int) -> int:
    """Return the smallest prime p ≡ 1 (mod 2·degree) with at least ``bits`` bits, as BFV
    batching needs."""
    step = 2 * degree
    k = math.ceil((1 << (bits - 1)) / step)
    while not gmpy2.is_prime(k * step + 1):
        k += 1
    return int(k * step + 1)
