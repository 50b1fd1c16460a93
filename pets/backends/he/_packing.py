"""Fixed-point encoding and slot packing of integers into one large plaintext."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["FixedPoint", "SlotPacker"]


@dataclass(frozen=True)
class FixedPoint:
    """Real numbers as integers: ``round(x * 10**digits)``."""

    digits: int

    @property
    def step(self) -> float:
        """The value of one unit."""
        return 10.0**-self.digits

    def encode(self, values: np.ndarray) -> list[int]:
        """Return Python ints (exact, unbounded)."""
        scaled = np.round(np.asarray(values, dtype=np.float64) * 10**self.digits)
        return [int(v) for v in scaled]

    def decode(self, values: list[int] | np.ndarray, *, power: int = 1) -> np.ndarray:
        """Return floats; ``power`` is how many scaled factors were multiplied together."""
        return np.array([float(v) for v in values]) / (10.0 ** (self.digits * power))


@dataclass(frozen=True)
class SlotPacker:
    """Pack signed integers into slots of ``slot_bits`` bits of one big integer.

    Each value is stored with an offset of ``2**(slot_bits - 1 - headroom)`` so negative
    numbers survive; ``headroom`` bits absorb the carries of adding up to
    ``2**headroom`` packed plaintexts (each adds its own offset, removed on unpacking).
    """

    slot_bits: int
    slots: int
    headroom: int

    @classmethod
    def for_modulus(cls, modulus_bits: int, slot_bits: int, addends: int) -> SlotPacker:
        """A packer whose packed value stays below a ``modulus_bits``-bit modulus."""
        headroom = max(1, math.ceil(math.log2(max(addends, 2))))
        return cls(slot_bits, (modulus_bits - 2) // slot_bits, headroom)

    @property
    def offset(self) -> int:
        """Offset added to each value."""
        return 1 << (self.slot_bits - 1 - self.headroom)

    def check(self, values: list[int]) -> None:
        """Raise ValueError if a value does not fit a slot."""
        biggest = max((abs(v) for v in values), default=0)
        if biggest >= self.offset:
            raise ValueError(
                f"value {biggest} needs more than {self.slot_bits - 1 - self.headroom} bits; "
                "raise slot_bits or lower the fixed-point precision"
            )

    def pack(self, values: list[int]) -> list[int]:
        """Return big integers, each holding up to ``slots`` values."""
        self.check(values)
        out = []
        for start in range(0, len(values), self.slots):
            total = 0
            for i, v in enumerate(values[start : start + self.slots]):
                total |= (v + self.offset) << (i * self.slot_bits)
            out.append(total)
        return out

    def unpack(self, packed: list[int], length: int, addends: int) -> list[int]:
        """Return ``length`` values from sums of ``addends`` packed plaintexts."""
        mask = (1 << self.slot_bits) - 1
        values = []
        for total in packed:
            for i in range(self.slots):
                if len(values) == length:
                    break
                values.append(((total >> (i * self.slot_bits)) & mask) - addends * self.offset)
        return values
