"""Settings: the config file's schema (`schema.py`, one definition per setting), loading with every
problem reported at once (`load.py`), and the generated reference (`reference.py`)."""

from .base import HostPort
from .credentials import Iap
from .limits import Limits
from .load import load
from .schema import Settings
from .telemetry import Tracing

__all__ = ["HostPort", "Iap", "Limits", "Settings", "Tracing", "load"]
