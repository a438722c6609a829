"""Run the tests on any machine with Python 3.11 or newer, nothing else installed.

    python3 tests/run.py                    # the whole suite
    python3 tests/run.py tests/server -k tls  # arguments go to pytest as they are

1. The test dependencies are the ``test`` extra in setup.cfg, and nothing
   else: the runner installs exactly those, from the package index, into a
   private environment, ``tests/.venv/env`` (git ignores it).  The machine's
   own Python is never changed, so a Python that refuses ``pip install``
   (PEP 668, "externally managed") is no obstacle.
2. The environment is reused by the next run (which then starts pytest at
   once) and made afresh when the declared dependencies or the Python running
   this script change.  Two runs at once wait for each other's set-up.
3. A Python without ``ensurepip`` (Debian's python3 without python3-venv)
   gets an environment without pip, filled by the machine's own pip with
   ``pip install --target``; with neither, the runner says what to install.
4. pytest runs where you are, if that is inside the checkout (paths as
   usual), else from the checkout's top (paths relative to it).  Its exit
   status is the runner's; the runner's own failures exit 2.

This file keeps to Python 3.6's syntax, so that an old Python reaches the message
saying it is too old.
"""

import configparser
import fcntl
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOME = os.path.join(ROOT, "tests", ".venv")
ENV = os.path.join(HOME, "env")
STAMP = os.path.join(ENV, "smanager-test-deps.json")  # what ENV was made from
PYTHON = os.path.join(ENV, "bin", "python")
NEEDS = (3, 11)


def say(message):
    print("tests/run.py: " + message, file=sys.stderr, flush=True)


def declared_requirements(setup_cfg=os.path.join(ROOT, "setup.cfg")):
    """The ``test`` extra of setup.cfg: one requirement a line."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(setup_cfg)
    text = parser.get("options.extras_require", "test", fallback="")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def wanted(requirements):
    """What an environment made now would be made from."""
    return {"python": os.path.realpath(sys.executable), "version": sys.version,
            "requirements": requirements}


def is_current(stamp_path, want):
    try:
        with open(stamp_path) as handle:
            return json.load(handle) == want
    except (OSError, ValueError):
        return False


def run(argv):
    """Run a set-up step; its output shows only if it fails."""
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.stderr.write(done.stdout.decode(errors="replace"))
    return done.returncode == 0


def succeeds(*argv):
    return subprocess.run([*argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def build(requirements):
    """Make ENV and install REQUIREMENTS into it; False (with a message) if impossible."""
    shutil.rmtree(ENV, ignore_errors=True)
    pip_quietly = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if succeeds(sys.executable, "-c", "import ensurepip"):
        say(f"making {os.path.relpath(ENV, ROOT)} with {', '.join(requirements)}")
        if run([sys.executable, "-m", "venv", ENV]):
            return run([PYTHON, *pip_quietly, *requirements])
        shutil.rmtree(ENV, ignore_errors=True)  # ensurepip without its wheels: go on
    if not succeeds(sys.executable, "-m", "pip", "--version"):
        say(f"{sys.executable} has neither ensurepip nor pip, so it cannot install "
            "pytest for the tests.  On Debian or Ubuntu: apt-get install python3-venv")
        return False
    say(f"this Python has no ensurepip: making {os.path.relpath(ENV, ROOT)} without pip "
        f"and filling it with the system's pip: {', '.join(requirements)}")
    if not run([sys.executable, "-m", "venv", "--without-pip", ENV]):
        return False
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([PYTHON, "-c", where], stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip()
    # --target installs beside no environment, so PEP 668's guard does not apply.
    return bool(site) and run([sys.executable, *pip_quietly, "--target", site, *requirements])


def ensure_environment():
    requirements = declared_requirements()
    if not requirements:
        say("setup.cfg declares no test extra ([options.extras_require] test)")
        return False
    want = wanted(requirements)
    os.makedirs(HOME, exist_ok=True)
    with open(os.path.join(HOME, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be making it right now
        if is_current(STAMP, want) and os.path.exists(PYTHON):
            return True
        if not build(requirements):
            shutil.rmtree(ENV, ignore_errors=True)  # never reuse a half-made one
            say("could not set up the test environment (see above)")
            return False
        with open(STAMP, "w") as handle:
            json.dump(want, handle)
    return True


def main(arguments):
    if sys.version_info < NEEDS:
        say("smanager needs Python %d.%d or newer; this is %s (%s)"
            % (NEEDS + (sys.version.split()[0], sys.executable)))
        return 2
    if not ensure_environment():
        return 2
    here = os.path.realpath(os.getcwd())
    if os.path.commonpath([here, os.path.realpath(ROOT)]) != os.path.realpath(ROOT):
        os.chdir(ROOT)  # from outside the checkout, pytest would look for tests there
    os.execv(PYTHON, [PYTHON, "-m", "pytest", *arguments])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
