"""The README's proc example is a configuration proc accepts as it is."""

import re
import tomllib
from pathlib import Path

from smanager.supervise.config_read import read_proc_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_configures_a_web_app_and_a_worker_that_depends_on_it():
    section = README.read_text().split("## Supervising programs", 1)[1]
    example = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    config = read_proc_config(tomllib.loads(example)["service"]["proc"])
    assert config.problems == []
    web, worker = config.programs["web"], config.programs["worker"]
    assert web.port == "auto" and web.ready.kind == "http"
    assert worker.depends_on == ("web",) and worker.command[1:3] == ("-m", "app.worker")
