"""``syft``: remote data science on PySyft 0.9.5 datasites (see :mod:`.backend`).

The modules: :mod:`.backend` (the backend, its approval policies and both task
kinds), :mod:`.datasite` (PySyft plumbing for the data owner and the researcher) and
:mod:`.code` (the researcher's generated code and what the data owner reads from it).
PySyft itself is imported only inside the party programs.
"""

from pets.backends.pysyft.backend import POLICIES, REQUIREMENTS, Accountant, Syft
from pets.backends.pysyft.code import declared, dp_query_code, query_code, site_table, table_code
from pets.backends.pysyft.datasite import mock_of

__all__ = [
    "POLICIES",
    "REQUIREMENTS",
    "Accountant",
    "Syft",
    "declared",
    "dp_query_code",
    "mock_of",
    "query_code",
    "site_table",
    "table_code",
]
