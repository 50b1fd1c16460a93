"""A PETs Sandbox backend from a supplier: additive secret sharing for ``aggregate``.

Registered under the ``pets.backends`` entry-point group as ``additive-sharing``.
"""

from pets_additive_sharing.backend import AdditiveSharing

__all__ = ["AdditiveSharing"]
__version__ = "0.1.0"
