"""Authentication: where credentials are (`extract`), which one decides (`authenticate`), how each
kind is verified (`providers/`, using the pure `verify`), and where keys come from (`keys`, the only
I/O)."""
