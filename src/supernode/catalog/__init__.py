"""The sourced catalog: schemas, loading and overlays."""

from supernode.catalog.loader import Catalog, load_catalog, read_yaml
from supernode.catalog.schema import Bandwidth, Chip, Quantity, Source, System

__all__ = ["Catalog", "load_catalog", "read_yaml", "Bandwidth", "Chip", "Quantity", "Source", "System"]

import supernode.rules  # noqa: E402,F401  (registers the `rules` item kind with the loader)
