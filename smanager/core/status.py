"""What ``status`` reports: the server, and each service's state and history.

Pure: it reads the manager and the catalog.  Where a service came from and
how it last failed are for admin eyes only, as failures in help are.
"""

import time

from .. import __version__
from ..auth.levels import Level


def when(seconds):
    """A time.time() as ISO 8601 in UTC, or None."""
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def report(manager, peer):
    """The status as a dict (text mode shows it as JSON, JSON mode keeps it),
    listing the services this connection may see in help."""
    catalog, full = manager.catalog, peer.level is Level.ADMIN
    visible = manager.access.view(catalog, peer).services
    services = {}
    for name, loaded in catalog.services.items():
        if name not in visible:
            continue
        entry = {"state": loaded.instance.state.value, "since": when(loaded.started)}
        if full:
            error = loaded.last_error
            entry["last_error"] = f"{when(error[0])} {error[1]}" if error else None
            entry["file"] = str(loaded.path) if loaded.path else None
        services[name] = entry
    if full:
        for name, failure in catalog.failures.items():
            services[name] = {"state": "not running", "since": None,
                              "last_error": failure.reason,
                              "file": str(failure.path) if failure.path else None}
    return {"version": __version__, "started": when(manager.started),
            "uptime_seconds": round(time.time() - manager.started),
            **manager.server_facts(), "services": services}
