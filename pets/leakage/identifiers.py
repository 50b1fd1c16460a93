"""Identifiers as an attacker normalises them: written forms, digests, encodings.

The dictionary attack (:mod:`pets.leakage.linkage`) holds a list of candidate NHS
numbers and asks, for each, whether a party's received bytes hold it in any form a
program would plausibly have written it:

- the number itself: decimal text, little- or big-endian int64, or written in groups
  of 3, 3 and 4 digits separated by a space, a dash or a dot (:data:`WRITTEN_FORMS`);
- a digest (:data:`DIGESTS`: MD5, SHA-1, SHA-256, SHA-512, BLAKE2b, BLAKE2b-256,
  BLAKE2s) of any of those written forms, unsalted, or of the decimal number with a
  candidate salt before or after it;
- each digest as hex of either case, standard or URL-safe base64 with or without
  padding, or raw bytes; whole or truncated to a prefix of at least
  :data:`MIN_PREFIX_BYTES` bytes (8 hex characters).

:class:`ObservedTokens` decodes a party's received bytes once (hex runs, base64 runs,
the strings inside :mod:`pets.wire` messages) and answers, for a batch of digests,
which occur (:meth:`ObservedTokens.match`). Raw digests are looked for by their first
8 bytes at every byte offset (:func:`pets.leakage.transcript.scan`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable

import numpy as np

from pets.leakage.transcript import scan

__all__ = [
    "DIGESTS",
    "MIN_PREFIX_BYTES",
    "WRITTEN_FORMS",
    "ObservedTokens",
    "digest_heads",
    "written_numbers",
]

#: A digest is recognised from this many leading bytes (8 hex characters).
MIN_PREFIX_BYTES = 4

#: Hash functions tried, by name.
DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "md5": lambda b: hashlib.md5(b).digest(),
    "sha1": lambda b: hashlib.sha1(b).digest(),
    "sha256": lambda b: hashlib.sha256(b).digest(),
    "sha512": lambda b: hashlib.sha512(b).digest(),
    "blake2b": lambda b: hashlib.blake2b(b).digest(),
    "blake2b-256": lambda b: hashlib.blake2b(b, digest_size=32).digest(),
    "blake2s": lambda b: hashlib.blake2s(b).digest(),
}


def _grouped(separator: str) -> Callable[[int], bytes]:
    def form(number: int) -> bytes:
        text = f"{number:010d}"
        return f"{text[:3]}{separator}{text[3:6]}{separator}{text[6:]}".encode()

    return form


#: How an NHS number may be written before it is hashed: decimal ("4857773456"),
#: grouped ("485 777 3456", "485-777-3456", "485.777.3456"), or as int64 bytes.
WRITTEN_FORMS: dict[str, Callable[[int], bytes]] = {
    "decimal": lambda n: str(n).encode(),
    "spaced": _grouped(" "),
    "dashed": _grouped("-"),
    "dotted": _grouped("."),
    "int64le": lambda n: n.to_bytes(8, "little", signed=True),
    "int64be": lambda n: n.to_bytes(8, "big", signed=True),
}

_HEX_RUN = re.compile(rb"[0-9a-fA-F]{8,}")
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{6,}={0,2}")
_GROUPED = re.compile(rb"(?<!\d)(\d{3})([ .-])(\d{3})\2(\d{4})(?!\d)")

#: Lengths in bytes of the digests tried (a longer run is cut at these).
_SIZES = sorted({len(f(b"")) for f in DIGESTS.values()})


def written_numbers(text: bytes) -> set[int]:
    """Return the numbers written in ``text`` as three groups of 3, 3 and 4 digits
    separated by one space, dash or dot."""
    return {int(a + b + c) for a, _, b, c in _GROUPED.findall(text)}


def _base64(token: bytes) -> list[bytes]:
    """Decode ``token`` as standard and as URL-safe base64 (padding restored)."""
    bare = token.rstrip(b"=")
    padded = bare + b"=" * (-len(bare) % 4)
    out = []
    for altchars in (b"+/", b"-_"):
        try:
            out.append(base64.b64decode(padded, altchars=altchars, validate=True))
        except (binascii.Error, ValueError):
            continue
    return out


def _pieces(raw: bytes) -> Iterable[bytes]:
    """A decoded run and, where longer than a digest, its digest-sized pieces from the
    start and the end (tokens stored back to back)."""
    yield raw
    for size in _SIZES:
        if len(raw) > size:
            for start in {0, len(raw) % size}:
                yield from (raw[i : i + size] for i in range(start, len(raw) - size + 1, size))


class ObservedTokens:
    """The byte strings an observer may have received as encoded digests.

    Parameters
    ----------
    haystack : bytes
        Every byte the observer received, joined.
    strings : iterable of str or bytes
        The strings inside the :mod:`pets.wire` messages it received.
    """

    def __init__(self, haystack: bytes, strings: Iterable[str | bytes] = ()) -> None:
        self.haystack = haystack
        texts = [
            haystack,
            *(s if isinstance(s, bytes) else s.encode("utf-8", "replace") for s in strings),
        ]
        tokens: set[bytes] = set()
        for text in texts:
            for run in _HEX_RUN.findall(text):
                even = run[: len(run) - len(run) % 2]
                tokens.update(_pieces(bytes.fromhex(even.decode("ascii"))))
            for run in _BASE64_RUN.findall(text):
                for raw in _base64(run):
                    tokens.update(_pieces(raw))
        self.tokens = {t for t in tokens if len(t) >= MIN_PREFIX_BYTES}
        self._by_head: dict[bytes, set[int]] = {}
        for t in self.tokens:
            self._by_head.setdefault(t[:MIN_PREFIX_BYTES], set()).add(len(t))
        self._heads = np.frombuffer(b"".join(self._by_head), "<u4").astype(np.uint64)
        self._raw: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    def match(self, digests: list[bytes], heads: np.ndarray | None = None) -> np.ndarray:
        """Which ``digests`` occur whole or as a prefix of at least
        :data:`MIN_PREFIX_BYTES` bytes, encoded as text, or raw (first 8 bytes).

        ``heads`` is :func:`digest_heads` of ``digests``, when the caller keeps it.
        """
        heads = digest_heads(digests) if heads is None else heads
        found = np.zeros(len(digests), bool)
        if self._heads.size:
            for i in np.flatnonzero(np.isin(heads & 0xFFFFFFFF, self._heads)).tolist():
                d = digests[i]
                lengths = self._by_head.get(d[:MIN_PREFIX_BYTES], ())
                found[i] = any(n <= len(d) and d[:n] in self.tokens for n in lengths)
        raw = self._raw if self._raw is not None else self._scan(heads)
        return found | np.isin(heads, raw)

    def find_raw(self, heads: np.ndarray) -> None:
        """Look for every one of ``heads`` raw in the bytes at once (one pass over a
        long transcript instead of one per scheme); :meth:`match` then looks up only
        these."""
        self._raw = self._scan(heads)

    def _scan(self, heads: np.ndarray) -> np.ndarray:
        found = scan(self.haystack, np.unique(heads).tolist(), 8)
        return np.fromiter(found, np.uint64, count=len(found))


def digest_heads(digests: list[bytes]) -> np.ndarray:
    """The first 8 bytes of each digest as little-endian unsigned integers."""
    return np.frombuffer(b"".join(d[:8] for d in digests), "<u8")
