"""Built-in backends. Each is registered through the ``pets.backends`` entry-point group,
exactly like a supplier's, and loaded by name through :class:`pets.registry.Registry`."""

__all__: list[str] = []
