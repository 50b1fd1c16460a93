"""Preloaded by the harness's fork server only: the fork server dies with the cell's
worker that started it (it also ends when the worker's end of its pipe closes, but a
signal from the kernel cannot be missed), so party processes it forked, which die with
it in turn, never outlive a runner killed outright."""

from __future__ import annotations

from pets.processes import die_with_parent

__all__: list[str] = []

die_with_parent()
