"""Route tables as data — the dashboard's HTTP routes (`ray_dashboard.py`) and Ray Client's gRPC methods
(`ray_client.py`) — compiled by `table.py`."""

from .ray_client import RAY_CLIENT_ROUTES
from .ray_dashboard import RAY_ROUTES, RAY_VERSION
from .table import RouteTable

DEFAULT_TABLE = RouteTable.build(RAY_ROUTES)
CLIENT_TABLE = RouteTable.build(RAY_CLIENT_ROUTES)

__all__ = ["CLIENT_TABLE", "DEFAULT_TABLE", "RAY_CLIENT_ROUTES", "RAY_ROUTES", "RAY_VERSION", "RouteTable"]
