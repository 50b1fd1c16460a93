"""Differential-privacy backends (the ``dp`` extra)."""

from pets.backends.dp.opendp_backend import OpenDP

__all__ = ["OpenDP"]
