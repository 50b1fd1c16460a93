"""Homomorphic-encryption backends: TenSEAL CKKS and BFV, and Paillier (python-paillier).

Install with the ``he`` extra: ``pip install 'pets-sandbox[he]'``.
"""

__all__: list[str] = []
