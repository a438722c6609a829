"""The README's proc and scripts examples are what those services accept as they are."""

import re
import tomllib
from pathlib import Path

from smanager.supervise.config_read import read_proc_config
from smanager.supervise.jojo import load_script
from smanager.supervise.scriptruns import read_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_configures_a_web_app_and_a_worker_that_depends_on_it():
    section = README.read_text().split("## Supervising programs", 1)[1]
    example = re.search(r"```toml\n(.*?)```", section, re.DOTALL).group(1)
    config = read_proc_config(tomllib.loads(example)["service"]["proc"])
    assert config.problems == []
    web, worker = config.programs["web"], config.programs["worker"]
    assert web.port == "auto" and web.ready.kind == "http"
    assert worker.depends_on == ("web",) and worker.command[1:3] == ("-m", "app.worker")


def test_the_readme_scripts_example_is_a_script_with_every_attribute_it_names(tmp_path):
    section = README.read_text().split("## Scripts", 1)[1]
    settings = tomllib.loads(re.search(r"```toml\n(.*?)```", section, re.DOTALL).group(1))
    assert read_settings(settings["service"]["scripts"]).max_concurrent == 4
    path = tmp_path / "restart.sh"
    path.write_text(re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1))
    path.chmod(0o755)
    script = load_script(str(path), "restart")
    params = {param.name: param for param in script.params}
    assert params["site"].required and params["site"].pattern.fullmatch("www-2")
    assert script.is_secret("password") and params["mode"].default == "safe"
    assert (script.tags, script.output, script.lock, script.timeout, script.level) == (
        ("deploy", "web"), "combined", "fail", 120, "admin")
