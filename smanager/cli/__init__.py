"""The ``smanager`` command: the server (main) and ``smanager users`` (users)."""

from .main import main

__all__ = ["main"]
