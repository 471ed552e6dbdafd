"""supernode: what an AI compute system really delivers for a workload.

Public API (stable): see ``__all__``.
"""

from supernode.errors import SupernodeError, CatalogError, UsageError
from supernode.catalog import Catalog, load_catalog
import supernode.claims  # noqa: F401  (registers the claims kind)

__all__ = ["SupernodeError", "CatalogError", "UsageError", "Catalog", "load_catalog"]
__version__ = "0.1.0"
