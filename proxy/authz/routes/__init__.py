"""Route tables as data (`ray_dashboard.py`; Ray Client's gRPC methods next), compiled by `table.py`."""

from .ray_dashboard import RAY_ROUTES, RAY_VERSION
from .table import RouteTable

DEFAULT_TABLE = RouteTable.build(RAY_ROUTES)

__all__ = ["DEFAULT_TABLE", "RAY_ROUTES", "RAY_VERSION", "RouteTable"]
