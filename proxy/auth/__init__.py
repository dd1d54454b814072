"""Authentication: verify IAP's signed header (`tokens`, pure) against keys from `keys` (the only I/O)."""
