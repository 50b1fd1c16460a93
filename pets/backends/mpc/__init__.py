"""Secure multi-party computation backends (the ``mpc`` extra)."""

from pets.backends.mpc.mpyc_backend import Mpyc

__all__ = ["Mpyc"]
