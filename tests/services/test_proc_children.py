"""What a supervised program gets from proc: its environment, user, umask and
working directory, and how a run ends when a grandchild keeps its output open.
Real children, through the core."""

import os
import pwd
import sys

import pytest
from helpers import SEP, ask_core, started_manager, until

from smanager.config import bundled_services_dir

PY = sys.executable


def reporting(expression, **keys):
    """A program that prints EXPRESSION once, then sleeps."""
    code = f"import os, sys, time; print({expression}, flush=True); time.sleep(1000)"
    return {"command": [PY, "-c", code], "start_secs": 0.2, **keys}


def manager_with(tmp_path, **programs):
    options = {"proc": {"state_dir": str(tmp_path / "state"), "programs": programs}}
    return started_manager(bundled_services_dir(), options=options)


async def printed(manager, name):
    program = manager.catalog.services["proc"].instance.supervisor.programs[name]
    assert await until(lambda: program.output.last_text("out") is not None)
    return program.output.last_text("out")


async def stop(manager, name):
    text = await ask_core(manager, f"proc stop {name}")
    assert text.endswith(SEP)


async def test_a_program_gets_a_built_environment_not_smanagers_own(tmp_path, monkeypatch):
    monkeypatch.setenv("SMANAGER_TEST_SECRET", "hunter2")
    env_file = tmp_path / "app.env"
    env_file.write_text("# settings\nexport FROM_FILE='one two'\nOVERRIDDEN=file\n\n")
    shown = "sorted((k, v) for k, v in os.environ.items() if k in ('FROM_FILE', 'OVERRIDDEN', " \
            "'SMANAGER_TEST_SECRET', 'PATH', 'LANG', 'SMANAGER_PROGRAM'))"
    program = reporting(shown, env_file=str(env_file), env={"OVERRIDDEN": "table"})
    async with manager_with(tmp_path, envy=program) as manager:
        pairs = dict(eval(await printed(manager, "envy")))  # noqa: S307 - our own program's repr
        await stop(manager, "envy")
    assert "SMANAGER_TEST_SECRET" not in pairs
    assert pairs["FROM_FILE"] == "one two" and pairs["OVERRIDDEN"] == "table"
    assert pairs["PATH"].startswith("/usr/local/sbin:") and pairs["LANG"] == "C.UTF-8"
    assert pairs["SMANAGER_PROGRAM"] == "envy"


async def test_a_program_without_a_cwd_runs_in_the_root_directory(tmp_path):
    async with manager_with(tmp_path, rooted=reporting("os.getcwd()")) as manager:
        assert await printed(manager, "rooted") == "/"
        await stop(manager, "rooted")


async def test_cwd_and_umask_apply_to_the_program(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    program = reporting("(os.getcwd(), oct(os.umask(0)))", cwd=str(workdir), umask="027")
    async with manager_with(tmp_path, where=program) as manager:
        assert await printed(manager, "where") == repr((str(workdir), "0o27"))
        await stop(manager, "where")


@pytest.mark.skipif(os.getuid() != 0, reason="only root can run a program as another user")
async def test_a_program_runs_as_its_configured_user_when_smanager_is_root(tmp_path):
    nobody = pwd.getpwnam("nobody")
    # sh, not this Python: nobody may not reach a virtual environment under /root
    program = {"command": ["sh", "-c", 'echo "$(id -u) $USER $HOME"; exec sleep 1000'],
               "start_secs": 0.2, "user": "nobody", "cwd": "/"}
    async with manager_with(tmp_path, lowly=program) as manager:
        assert await printed(manager, "lowly") == f"{nobody.pw_uid} nobody {nobody.pw_dir}"
        await stop(manager, "lowly")


async def test_a_missing_working_directory_is_a_start_error_naming_it(tmp_path):
    program = reporting("1", cwd=str(tmp_path / "gone"), autostart=False)
    async with manager_with(tmp_path, lost=program) as manager:
        reply = await ask_core(manager, "proc start lost")
        assert reply.startswith(f"ERROR: lost could not start: cwd {tmp_path / 'gone'}: ")


async def test_a_run_ends_soon_after_its_leader_even_if_a_grandchild_keeps_the_pipes(tmp_path):
    program = {"command": ["sh", "-c", "sleep 1000 & echo started"], "restart": "never",
               "start_secs": 0}
    async with manager_with(tmp_path, lingering=program) as manager:
        began = os.times().elapsed
        reply = await ask_core(manager, "proc wait lingering state=exited timeout=10")
        assert reply == "lingering: EXITED\n" + SEP
        assert os.times().elapsed - began < 5  # PIPE_GRACE (2 s), not the sleep's 1000
        why = await ask_core(manager, "proc why lingering")
        assert "exited with status 0" in why
