"""Policy sources for the authorizer's union: the static policy file (`static.py`); Kubernetes RBAC
and Google Groups next."""
