"""The README's test command (tests/run.py) and CI: CI runs exactly that command
and installs nothing Python itself; the runner makes its own environment from
setup.cfg's test extra, reuses it, and hands its arguments to pytest.

The end-to-end test runs the runner on a copy of it in a scratch checkout, with
pip pointed at a wheel made here (a stand-in "pytest" that reports how it was
called), so it needs no network."""

import base64
import configparser
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import run as runner  # tests/run.py: tests/ is on sys.path, as for helpers
from helpers import ROOT


def readme_test_command():
    """The command the README's "## Set up" block gives for running the tests."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Set up\n\n```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    tests = [line for line, full in zip(commands, block.splitlines()) if "test" in full]
    assert len(tests) == 1, block
    return tests[0]


def test_ci_runs_the_readme_test_command_and_installs_no_python_package():
    command = readme_test_command()
    script = (ROOT / ".ci" / "run").read_text()
    lines = [line.strip() for line in script.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert lines[-1] == command
    assert not re.search(r"\bpip\b|pytest", "\n".join(lines[:-1])), \
        "CI installs test dependencies itself, so a gap in the test command goes unseen"


def test_the_test_extra_holds_what_the_pytest_settings_use():
    setup = configparser.ConfigParser(interpolation=None)
    setup.read(ROOT / "setup.cfg")
    names = {re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower()
             for line in runner.declared_requirements(str(ROOT / "setup.cfg"))}
    assert "pytest" in names
    if any(key.startswith("asyncio_") for key in setup["tool:pytest"]):
        assert "pytest-asyncio" in names


def test_the_environment_is_made_again_when_the_requirements_or_python_change(tmp_path):
    stamp = tmp_path / "stamp.json"
    want = runner.wanted(["pytest >= 9"])
    assert not runner.is_current(str(stamp), want)  # none yet
    stamp.write_text("{not json")
    assert not runner.is_current(str(stamp), want)
    stamp.write_text(__import__("json").dumps(want))
    assert runner.is_current(str(stamp), want)
    assert not runner.is_current(str(stamp), runner.wanted(["pytest >= 9", "hypothesis"]))
    assert not runner.is_current(str(stamp), {**want, "version": "3.99.0"})


# -- end to end, offline ------------------------------------------------------------------------

REPORTER = b"""import os, sys
print("fake pytest", os.getcwd(), sys.argv[1:], sys.prefix)
sys.exit(int(os.environ.get("FAKE_PYTEST_EXIT", "0")))
"""


def fake_pytest_wheel(directory):
    """A wheel named pytest 0.0.1 whose ``python -m pytest`` prints its cwd and arguments."""
    name = directory / "pytest-0.0.1-py3-none-any.whl"
    files = {
        "pytest/__init__.py": b"",
        "pytest/__main__.py": REPORTER,
        "pytest-0.0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: pytest\nVersion: 0.0.1\n",
        "pytest-0.0.1.dist-info/WHEEL": (b"Wheel-Version: 1.0\nGenerator: tests\n"
                                         b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    record = []
    with zipfile.ZipFile(name, "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
        record.append("pytest-0.0.1.dist-info/RECORD,,")
        wheel.writestr("pytest-0.0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return name


def can_install():
    """Can this Python make an environment with pip in it, or fill one with its own pip?"""
    return any(subprocess.run([sys.executable, *check], capture_output=True).returncode == 0
               for check in (["-c", "import ensurepip"], ["-m", "pip", "--version"]))


def test_the_runner_makes_its_environment_once_and_passes_arguments_to_pytest(tmp_path):
    if not can_install():
        pytest.skip(f"{sys.executable} has neither ensurepip nor pip")
    checkout = tmp_path / "checkout"
    (checkout / "tests" / "server").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "run.py", checkout / "tests" / "run.py")
    (checkout / "setup.cfg").write_text(
        "[options.extras_require]\ntest =\n    pytest == 0.0.1\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fake_pytest_wheel(wheels)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}

    def run(*arguments, cwd=checkout, **more):
        return subprocess.run([sys.executable, str(checkout / "tests" / "run.py"), *arguments],
                              cwd=cwd, env={**env, **more}, capture_output=True, text=True,
                              timeout=300)

    first = run("-k", "tls", cwd=checkout / "tests")
    assert first.returncode == 0, first.stderr
    assert "making tests/.venv/env" in first.stderr
    assert first.stdout == (f"fake pytest {checkout / 'tests'} ['-k', 'tls'] "
                            f"{checkout / 'tests' / '.venv' / 'env'}\n")

    again = run("tests/server", cwd=tmp_path, FAKE_PYTEST_EXIT="3")
    assert again.returncode == 3  # pytest's exit status is the runner's
    assert again.stderr == ""  # the environment was reused as it was
    assert again.stdout.startswith(f"fake pytest {checkout} ['tests/server'] ")  # from the top
