"""smanager: a remote service manager.

A service author needs only ``from smanager import SService``; see
smanager.core.commands for the rules that turn its methods into commands.
A metrics collector is ``from smanager import Collector`` (smanager.collector).
"""

from .auth.levels import level
from .collector import Collector
from .core.commands import filtered
from .service import Session, SService, StartRefused
from .wire.errors import CommandError
from .wire.protocol import Final, Shown

__version__ = "0.1.0"
__all__ = ["Collector", "CommandError", "Final", "SService", "Session", "Shown", "StartRefused", "__version__", "filtered", "level"]
