"""Telemetry: the access record and spans (`access`), where logs go (`logs`), redaction of secrets
(`redaction`), and the Prometheus exposition (`metrics`)."""

from .access import Telemetry

__all__ = ["Telemetry"]
