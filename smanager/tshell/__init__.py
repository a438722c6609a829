"""tshell, the command-line client: one command, a script, many hosts, or a shell."""

from .main import main

__all__ = ["main"]
