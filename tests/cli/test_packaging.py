"""``pip install .`` into a fresh virtual environment, as README's Deploying says:
the smanager and tshell commands it gives work from any directory, with every
package and bundled service of the checkout, and ``python -m smanager`` is the
same program as ``smanager``."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import ROOT, TIMEOUT

BUILD_INPUTS = ("setup.cfg", "pyproject.toml", "README.md")  # besides smanager/ and services/
INSTALL_TIME = 300  # seconds: pip may fetch setuptools to build with


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A virtual environment with smanager pip-installed from a copy of the
    checkout (a build writes build/ and *.egg-info beside its sources)."""
    home = tmp_path_factory.mktemp("packaging")
    source = home / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        shutil.copy(ROOT / name, source / name)
    for name in ("smanager", "services"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    made = subprocess.run([sys.executable, "-m", "venv", str(home / "venv")],
                          capture_output=True, text=True, timeout=INSTALL_TIME, check=False)
    if made.returncode and "ensurepip" in made.stdout + made.stderr:
        pytest.skip("this Python makes no virtual environments with pip (python3-venv)")
    assert made.returncode == 0, made.stderr
    bin_dir = home / "venv" / "bin"
    build = subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         str(source)], cwd=home, capture_output=True, text=True, timeout=INSTALL_TIME,
        check=False)
    if build.returncode and "No matching distribution found for setuptools" in build.stderr:
        pytest.skip("pip cannot fetch setuptools to build with (no package index)")
    assert build.returncode == 0, build.stderr
    # Run from elsewhere, with nothing pointing at the checkout.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    env["COLUMNS"] = "100"  # argparse wraps help to the terminal's width
    place = subprocess.run([bin_dir / "python", "-c", "import smanager; print(smanager.__file__)"],
                           cwd=home, env=env, capture_output=True, text=True, check=True,
                           timeout=TIMEOUT)
    return SimpleNamespace(bin=bin_dir, package=Path(place.stdout.strip()).parent, env=env,
                           cwd=home)


def run(installed, *argv):
    done = subprocess.run([str(arg) for arg in argv], cwd=installed.cwd, env=installed.env,
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    return done.returncode, done.stdout, done.stderr


def test_the_installed_package_is_in_the_venv_with_every_package_and_service(installed):
    assert installed.package.is_relative_to(installed.cwd / "venv")
    packages = sorted(str(init.parent.relative_to(ROOT / "smanager"))
                      for init in (ROOT / "smanager").rglob("__init__.py"))
    missing = [package for package in packages
               if not (installed.package / package / "__init__.py").is_file()]
    assert missing == []
    services = sorted(path.name for path in (ROOT / "services").glob("*.py"))
    assert sorted(path.name for path in (installed.package / "bundled_services").glob("*.py")) \
        == services


@pytest.mark.parametrize("argv, usage", [
    (["smanager", "--help"], "usage: smanager "),
    (["smanager", "users", "--help"], "usage: smanager users "),
    (["smanager", "completion", "--help"], "usage: smanager completion "),
    (["tshell", "--help"], "usage: tshell "),
])
def test_the_installed_commands_answer_help_from_any_directory(installed, argv, usage):
    status, out, err = run(installed, installed.bin / argv[0], *argv[1:])
    assert (status, err) == (0, "") and out.startswith(usage)


def test_smanager_help_names_the_installed_bundled_services(installed):
    done = subprocess.run([installed.bin / "smanager", "--help"], cwd=installed.cwd,
                          env={**installed.env, "COLUMNS": "1000"},  # no line breaks in a path
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0
    assert f"the bundled services ({installed.package / 'bundled_services'};" in done.stdout


@pytest.mark.parametrize("argv", [
    ["--help"], ["users", "--help"], ["completion", "bash"], ["--version"], ["--port", "x"],
    ["users", "list"], ["__complete", "15", "", "smanager users "],
])
def test_python_m_smanager_is_the_smanager_command(installed, argv):
    assert run(installed, installed.bin / "python", "-m", "smanager", *argv) == \
        run(installed, installed.bin / "smanager", *argv)


def test_the_installed_commands_answer_tab(installed):
    assert run(installed, installed.bin / "smanager", "__complete", "15", "", "smanager users ") \
        == (0, "words\nlist\nadd\npassword\nlevel\nremove\n", "")
    assert run(installed, installed.bin / "tshell", "__complete", "10", "--h", "tshell --h") \
        == (0, "words\n--help\n--hosts\n--hosts-file\n", "")


def test_the_installed_server_runs_every_bundled_service(installed):
    server = subprocess.Popen(
        [installed.bin / "smanager", "--host", "127.0.0.1", "--port", "0"], cwd=installed.cwd,
        env=installed.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = []
    try:
        for line in server.stderr:  # bounded: it logs its address, or exits
            log.append(line)
            if "listening on" in line:
                break
        address = log[-1].split("listening on ")[1].split()[0]
        status, out, err = run(installed, installed.bin / "tshell", address, "-c", "help -s")
        assert (status, err) == (0, "")
        assert out.splitlines()[1] == "SERVICES: monitor proc scrapman scripts systemstatus"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            assert server.wait(TIMEOUT) == 0
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
            server.stderr.close()
    assert not [line for line in log if "ERROR" in line], "".join(log)
