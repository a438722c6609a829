"""Finding services on disk.

A services directory holds Python files; each file not starting with ``_`` is
imported as its own module, fresh every time (that is how ``restart`` picks up
edited code), under a name unique to its path.  The services of a module are
the SService subclasses *defined* in it (not imported into it), in source order,
except:

- a class whose name begins with ``_``;
- a base: a class another class of the same file derives from (a class whose
  name begins with ``_`` does not count).  A helper base class holding what
  several services share is not a service itself; the log says so.  (To run a
  class and a variant of it both, derive both from a common base.)

A file that fails to import is reported, never raised: one broken service must
not stop the others.
"""

import hashlib
import importlib.machinery
import importlib.util
import inspect
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..service import SService
from ..wire.errors import SERVICE_FAILURES, describe_exception

log = logging.getLogger("smanager.loader")
VALID_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass
class ModuleScan:
    """What one file yielded: its service classes, or why it failed."""

    path: Path
    classes: list = field(default_factory=list)
    error: str | None = None

    @property
    def label(self):
        return self.path.stem.lower()


def service_files(directories):
    """The candidate files, directory by directory, sorted by name within each."""
    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            log.error("services directory %s does not exist", directory)
            continue
        for path in sorted(directory.glob("*.py")):
            if not path.name.startswith("_"):
                yield path.resolve()


def module_name(path):
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    safe_stem = re.sub(r"\W", "_", path.stem)
    return f"smanager_service_{safe_stem}_{digest}"


class FromSource(importlib.machinery.SourceFileLoader):
    """Compiles the file every time, never through ``__pycache__``: the cache
    trusts a file whose size and mtime in whole seconds are unchanged, so an
    edit followed by ``restart`` within the second could run the old code."""

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


def import_file(path):
    """Import one file afresh and list its services; never raises."""
    name = module_name(path)
    try:
        spec = importlib.util.spec_from_file_location(name, path,
                                                      loader=FromSource(name, str(path)))
        module = importlib.util.module_from_spec(spec)
        # Registered before running it, as a normal import would be, so that
        # dataclasses and pickling inside the module work; undone on failure.
        previous = sys.modules.get(name)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
            raise
    except SERVICE_FAILURES as exc:  # a broken file is a report
        reason = describe_exception(exc)
        log.error("cannot load services from %s: %s", path.name, reason, exc_info=True)
        return ModuleScan(path, error=reason)
    defined = list(dict.fromkeys(  # each class once, however many names it has
        value for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, SService)
        and value is not SService and value.__module__ == name))
    public = [cls for cls in defined if not cls.__name__.startswith("_")]
    bases = {base for cls in public for base in cls.__mro__[1:]}
    for base in (cls for cls in public if cls in bases):
        log.info("%s: %s is a base of other classes there, not a service", path.name,
                 base.__name__)
    return ModuleScan(path, [cls for cls in public if cls not in bases])  # in source order


def service_name(cls):
    """The name clients type: the class's ``name``, or its lower-cased class name."""
    return str(cls.name or cls.__name__).lower()

