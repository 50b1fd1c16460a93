"""The party runtime: every party of a cell in its own operating-system process.

:mod:`pets.runtime.context` is what a party program sees (:class:`PartyContext`);
:mod:`pets.runtime.launcher` starts the party processes and has backends described;
:mod:`pets.runtime.harness` runs their programs and carries their messages;
:mod:`pets.runtime.codec` turns values into bytes and back (never pickle);
:mod:`pets.runtime.relay` relays and meters the sockets of backends that bring their own
network stack.
"""
