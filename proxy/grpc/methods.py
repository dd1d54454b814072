"""Ray Client's connection "ping": the method its client calls first (`worker.py` `ping_server`), and
Ray's answer to it, serialized: `ClusterInfoResponse(json="{}")` (field 2, length 2), the same constant
for everyone (`proxier.py` `ClusterInfo`). It carries no data about the cluster. The method table itself
is a route table: proxy/authz/routes/ray_client.py.
"""

from __future__ import annotations

from proxy.authz.routes.ray_client import DRIVER

CLUSTER_INFO = DRIVER + "ClusterInfo"
PING_ANSWER = b"\x12\x02{}"
