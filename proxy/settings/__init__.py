"""Settings: the config file's schema (`schema.py`, one definition per setting), loading with every
problem reported at once (`load.py`), and the generated reference (`reference.py`)."""

from .base import HostPort
from .load import load
from .schema import Iap, Limits, Settings, Tracing

__all__ = ["HostPort", "Iap", "Limits", "Settings", "Tracing", "load"]
