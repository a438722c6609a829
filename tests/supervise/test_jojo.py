"""supervise.jojo: Pyjojo's `-- jojo --` blocks parsed from strings, script names, tag filters,
and real files in tmp_path for loading and scanning directories."""

import os
import re

import pytest

from smanager.supervise.jojo import (
    MAX_READ,
    Script,
    ScriptError,
    ScriptParam,
    load_script,
    matches,
    parse_block,
    scan,
    script_name,
)

# Pyjojo's README tutorial script (its code block, unindented), byte for byte.
PYJOJO_README_ECHO = """\
#!/bin/bash

# -- jojo --
# description: echo text on the command line
# param: text - text to echo
# -- jojo --

echo "echo'd text: $TEXT"
echo "jojo_return_value name=bob"
echo "jojo_return_value age=99"
exit 0
"""

# Pyjojo's test/fixtures/echo.sh, byte for byte.
PYJOJO_FIXTURE_ECHO = """\
#!/bin/bash

# -- jojo --
# description: echo text on the command line
# param: text - text to echo
# -- jojo --

echo 'echod text:' + $TEXT
exit 0
"""

# The "Example block" of Pyjojo's README, with its trailing space after the closing marker.
PYJOJO_README_BLOCK = """\
# -- jojo --
# description: echo script
# param: text - text to echo back
# param: secret1 - sensitive text you don't want logged
# param: secret2 - more sensitive stuff
# filtered_params: secret1, secret2
# tags: test, staging
# http_method: get
# lock: False
""" + "# -- jojo -- \n"


def block(*lines):
    return "#!/bin/sh\n# -- jojo --\n" + "".join(f"# {line}\n" for line in lines) + "# -- jojo --\n"


def write(path, text, mode=0o755):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("text", [PYJOJO_README_ECHO, PYJOJO_FIXTURE_ECHO])
def test_pyjojos_own_echo_scripts_load_as_one_text_parameter(tmp_path, text):
    path = write(tmp_path / "echo.sh", text)
    assert load_script(str(path), "echo") == Script(
        name="echo", path=str(path), description="echo text on the command line",
        params=(ScriptParam("text", "text to echo"),), filtered_params=(), tags=(),
        output="split", lock="none", timeout=300.0, level="operate", http_method="post")


def test_pyjojos_readme_example_block_gives_secrets_tags_and_method():
    assert parse_block(PYJOJO_README_BLOCK) == {
        "description": "echo script",
        "params": (ScriptParam("text", "text to echo back"),
                   ScriptParam("secret1", "sensitive text you don't want logged", secret=True),
                   ScriptParam("secret2", "more sensitive stuff", secret=True)),
        "filtered_params": ("secret1", "secret2"),
        "tags": ("test", "staging"),
        "http_method": "get",
        "lock": "none"}


def test_metadata_is_pyjojos_options_shape_plus_smanagers_keys():
    script = Script(**parse_block(block(
        "description: deploy", "param: host - where (pattern=[a-z]+)", "param: token (secret)",
        "param: mode (default=fast)", "filtered_params: host", "tags: web", "lock: fail",
        "timeout: 60", "level: admin")), name="deploy", path="/srv/deploy.sh")
    assert script.metadata() == {
        "filename": "/srv/deploy.sh", "http_method": "post", "name": "deploy",
        "description": "deploy",
        "params": [
            {"name": "host", "description": "where", "pattern": "[a-z]+", "required": False,
             "default": None, "secret": True},
            {"name": "token", "description": "", "pattern": None, "required": False,
             "default": None, "secret": True},
            {"name": "mode", "description": "", "pattern": None, "required": False,
             "default": "fast", "secret": False}],
        "filtered_params": ["host"], "tags": ["web"], "output": "split",
        "lock": True, "lock_mode": "fail", "timeout": 60.0, "level": "admin"}
    assert [script.is_secret(name) for name in ("host", "token", "mode")] == [True, True, False]


def test_a_script_without_a_block_or_with_an_empty_one_sets_nothing():
    assert parse_block("#!/bin/sh\necho hi\n") == {}
    assert parse_block(block()) == {}


@pytest.mark.parametrize("line, fields", [
    ("description: deploy: web - then restart", {"description": "deploy: web - then restart"}),
    ("description: see http://example.com/a-b", {"description": "see http://example.com/a-b"}),
    ("description: issue #5", {"description": "issue #5"}),
    ("description:", {"description": ""}),
    ("output: combined", {"output": "combined"}),
    ("output: Split", {"output": "split"}),
    ("http_method: GET", {"http_method": "get"}),
    ("timeout: 30", {"timeout": 30.0}),
    ("timeout: 1.5", {"timeout": 1.5}),
    ("level: read", {"level": "read"}),
    ("level: Admin", {"level": "admin"}),
    ("tags: a, b,, a", {"tags": ("a", "b")}),
    ("tags:", {}),
    ("queue: 3", {}),  # not a key: ignored, as Pyjojo ignores unknown keys
    ("Description: keys are matched exactly, as Pyjojo does", {}),
    ("no colon on this line", {}),
])
def test_each_known_key_sets_its_field_and_others_are_ignored(line, fields):
    assert parse_block(block(line)) == fields


@pytest.mark.parametrize("value, mode", [
    ("True", "wait"), ("true", "wait"), ("False", "none"), ("FALSE", "none"),
    ("wait", "wait"), ("Fail", "fail"), ("none", "none")])
def test_lock_true_waits_false_does_not_lock_any_case(value, mode):
    assert parse_block(block(f"lock: {value}")) == {"lock": mode}


def test_tags_and_filtered_params_accumulate_over_lines():
    fields = parse_block(block("tags: a", "param: x", "param: y", "tags: b, c",
                               "filtered_params: x", "filtered_params: y"))
    assert fields["tags"] == ("a", "b", "c")
    assert fields["filtered_params"] == ("x", "y")


@pytest.mark.parametrize("line, param", [
    ("text", ScriptParam("text")),
    ("text -", ScriptParam("text")),
    ("text - text to echo", ScriptParam("text", "text to echo")),
    ("text - a - b: c", ScriptParam("text", "a - b: c")),
    ("dry-run", ScriptParam("dry", "run")),  # Pyjojo's meaning: the first "-" ends the name
    ("host - the host (fqdn)", ScriptParam("host", "the host (fqdn)")),
    ("host - see (docs) (required)", ScriptParam("host", "see (docs)", required=True)),
    ("text (required)", ScriptParam("text", required=True)),
    ("text - (secret)", ScriptParam("text", secret=True)),
    ("text - x (required, secret)", ScriptParam("text", "x", required=True, secret=True)),
    ("name - x (pattern=^[a-z]+(-[a-z]+)*$)",
     ScriptParam("name", "x", pattern=re.compile(r"^[a-z]+(-[a-z]+)*$"))),
    ("n - x (secret, pattern=\\d+, \\d+)", ScriptParam("n", "x", re.compile(r"\d+, \d+"), secret=True)),
    ("url - where (default=http://x:80/a-b)", ScriptParam("url", "where", default="http://x:80/a-b")),
    ("pair (default=a,b)", ScriptParam("pair", default="a,b")),
    ("mode (default=)", ScriptParam("mode", default="")),
    ("size (default=10, pattern=[0-9]+)", ScriptParam("size", default="10", pattern=re.compile("[0-9]+"))),
])
def test_param_lines_plain_pyjojo_or_with_attributes(line, param):
    assert parse_block(block(f"param: {line}")) == {"params": (param,)}


KNOWN_ATTRIBUTES = "(known: required, secret, default=VALUE, pattern=REGEX)"


@pytest.mark.parametrize("lines, error", [
    (["output: sideways"], "line 3: output must be split or combined, not 'sideways'"),
    (["timeout: soon"], "line 3: timeout must be a number of seconds above 0, not 'soon'"),
    (["timeout: 0"], "line 3: timeout must be a number of seconds above 0, not '0'"),
    (["timeout: -5"], "line 3: timeout must be a number of seconds above 0, not '-5'"),
    (["timeout: inf"], "line 3: timeout must be a number of seconds above 0, not 'inf'"),
    (["timeout: nan"], "line 3: timeout must be a number of seconds above 0, not 'nan'"),
    (["lock: maybe"], "line 3: lock must be True, False, wait, fail or none, not 'maybe'"),
    (["level: root"], "line 3: level must be read, operate or admin, not 'root'"),
    (["http_method: patch"], "line 3: http_method must be get, post, put or delete, not 'patch'"),
    (["param:"], "line 3: param needs a name: param: NAME [- DESCRIPTION]"),
    (["param: - text to echo"], "line 3: param needs a name: param: NAME [- DESCRIPTION]"),
    (["param: my text - x"],
     "line 3: parameter name 'my text' must be letters, digits and _, not starting with a digit"),
    (["param: 1st"],
     "line 3: parameter name '1st' must be letters, digits and _, not starting with a digit"),
    (["param: text - x (requried, secret)"],
     f"line 3: unknown attribute 'requried' of 'text' {KNOWN_ATTRIBUTES}"),
    (["param: text - x (required=yes, secret)"],
     f"line 3: unknown attribute 'required=yes' of 'text' {KNOWN_ATTRIBUTES}"),
    (["param: text - x (default, secret)"],
     f"line 3: unknown attribute 'default' of 'text' {KNOWN_ATTRIBUTES}"),
    (["param: text - x (secret, secret)"], "line 3: attribute 'secret' of 'text' given twice"),
    (["param: text - x (pattern=[a-z)"],
     "line 3: pattern of 'text' is not a regular expression: unterminated character set at position 0"),
    (["param: text - x (pattern=[a-z]+, required)"],
     "line 3: pattern= must come last: it takes everything up to the final ')'"),
    (["param: text - x (required, default=a)"],
     "line 3: 'text' cannot be both required and have a default"),
    (["param: text - x (default=A, pattern=[a-z]+)"],
     "line 3: default 'A' of 'text' does not match its pattern"),
    (["param: text", "description: x", "param: TEXT"],
     "line 5: parameter 'TEXT' repeats 'text': both are $TEXT"),
    (["param: text", "param: text"], "line 4: parameter 'text' repeats 'text': both are $TEXT"),
    (["param: text", "filtered_params: text, password"],
     "line 4: filtered parameter 'password' is not declared by a param line"),
])
def test_a_malformed_known_key_is_one_line_naming_its_line(lines, error):
    with pytest.raises(ScriptError) as raised:
        parse_block(block(*lines))
    assert str(raised.value) == error


def test_an_unterminated_block_names_the_line_that_opened_it():
    with pytest.raises(ScriptError, match=r"^line 3: the block opened here is never closed by "
                                          r"'# -- jojo --'$"):
        parse_block("#!/bin/sh\n\n# -- jojo --\n# description: x\necho hi\n")


def test_where_prefixes_the_message():
    with pytest.raises(ScriptError, match=r"^deploy\.sh line 3: output must be"):
        parse_block(block("output: sideways"), where="deploy.sh")


def test_only_comments_inside_the_first_block_count():
    text = ("#!/bin/sh\n"
            "# usage: deploy: a - b\n"       # before the block: not read (Pyjojo crashed on it)
            "# -- jojo --\n"
            "#   description: one\n"
            "description: not a comment\n"  # skipped, as Pyjojo skips it
            "  # param: indented, so not a comment\n"
            "#\n"
            "# -- jojo --\n"
            "# -- jojo --\n"                 # a second block is never read
            "# output: sideways\n"
            "# -- jojo --\n")
    assert parse_block(text) == {"description": "one"}


def test_windows_line_endings_are_read_like_unix_ones():
    assert parse_block(block("description: x", "tags: a, b").replace("\n", "\r\n")) == {
        "description": "x", "tags": ("a", "b")}


@pytest.mark.parametrize("relative, name", [
    ("echo.sh", "echo"),
    ("deploy/web-app.sh", "deploy_web_app"),
    ("a.b.sh", "a_b"),           # the last extension only, as Pyjojo
    ("archive.tar.gz", "archive_tar"),
    ("noext", "noext"),          # Pyjojo: "" (unreachable); a file without "." keeps its name
    ("conf.d/run", "conf_d_run"),  # Pyjojo: "conf"; a folder's "." is no extension
    ("conf.d/run.sh", "conf_d_run"),
    ("run.", "run"),
    ("caf\u00e9.sh", "caf_"),    # ASCII word characters only, as Pyjojo's byte strings
    ("a  --  b.sh", "a_b"),
])
def test_script_names_follow_pyjojo(relative, name):
    assert script_name(relative) == name


def tagged(*tags):
    return Script("s", "/s", None, (), (), tags)


@pytest.mark.parametrize("have, filters, expected", [
    ((), {}, True),
    (("a", "b"), {}, True),
    (("a", "b"), {"tags": ["a"]}, True),
    (("a", "b"), {"tags": ["a", "b"]}, True),
    (("a",), {"tags": ["a", "b"]}, False),
    (("a",), {"any_tags": ["b", "a"]}, True),
    (("a",), {"any_tags": ["b", "c"]}, False),
    ((), {"any_tags": ["a"]}, False),
    (("a",), {"not_tags": ["b"]}, True),
    (("a", "b"), {"not_tags": ["c", "b"]}, False),
    ((), {"not_tags": ["a"]}, True),
    (("a", "b"), {"tags": ["a"], "not_tags": ["b"]}, False),
    (("a", "c"), {"tags": ["a"], "any_tags": ["b", "c"], "not_tags": ["d"]}, True),
    (("a",), {"tags": ["a"], "any_tags": ["b"]}, False),
    (("a",), {"tags": [""], "any_tags": [""], "not_tags": [""]}, True),  # "tags=" filters nothing
])
def test_tag_filters_all_any_none_combined(have, filters, expected):
    assert matches(tagged(*have), **filters) is expected


def test_loading_a_file_without_the_exec_bit_is_refused(tmp_path):
    path = write(tmp_path / "echo.sh", PYJOJO_README_ECHO, mode=0o644)
    with pytest.raises(ScriptError, match="^not executable$"):
        load_script(str(path), "echo")


def test_loading_a_broken_symlink_or_a_fifo_says_why(tmp_path):
    (tmp_path / "gone.sh").symlink_to(tmp_path / "nowhere.sh")
    os.mkfifo(tmp_path / "pipe.sh", 0o755)
    with pytest.raises(ScriptError, match="^unreadable: No such file or directory$"):
        load_script(str(tmp_path / "gone.sh"), "gone")
    with pytest.raises(ScriptError, match="^not a regular file$"):
        load_script(str(tmp_path / "pipe.sh"), "pipe")  # refused, not waited on


def test_a_block_past_the_first_mib_is_not_read(tmp_path):
    path = write(tmp_path / "big.sh", "#!/bin/sh\n" + "#" * MAX_READ + "\n" + block("description: x"))
    assert load_script(str(path), "big").description is None


def test_scan_finds_scripts_and_says_why_the_others_cannot_run(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    write(first / "echo.sh", PYJOJO_README_ECHO)
    write(first / "deploy" / "web-app.sh", block("description: deploy", "tags: web"))
    write(first / "README.md", "# Scripts\n\nRun them: with care.\n", mode=0o644)
    write(first / "notes.sh", block("description: forgot chmod"), mode=0o644)
    write(first / "broken.sh", block("output: sideways"))
    write(first / ".hidden.sh", PYJOJO_README_ECHO)
    write(first / ".git" / "hook.sh", PYJOJO_README_ECHO)
    (first / "gone.sh").symlink_to(first / "nowhere.sh")
    os.mkfifo(first / "pipe", 0o755)
    write(first / "dup.sh", "#!/bin/sh\n")
    write(first / "dup.py", "#!/usr/bin/env python3\n")
    write(second / "echo.sh", PYJOJO_FIXTURE_ECHO)
    write(second / "broken.py", PYJOJO_FIXTURE_ECHO)
    write(second / "other.sh", "#!/bin/sh\necho hi\n")

    scripts, problems = scan([str(first), str(second), str(tmp_path / "missing")])

    assert sorted(scripts) == ["deploy_web_app", "dup", "echo", "other"]
    assert scripts["echo"].path == str(first / "echo.sh")
    assert scripts["deploy_web_app"].tags == ("web",)
    assert scripts["dup"].path == str(first / "dup.py")  # sorted: dup.py before dup.sh
    assert scripts["other"] == Script("other", str(second / "other.sh"), None, (), (), ())
    assert problems == {
        "notes": "not executable",
        "broken": "line 3: output must be split or combined, not 'sideways'",
        "gone": "unreadable: No such file or directory",
        "pipe": "not a regular file",
        str(first / "dup.sh"): f"same name as {first / 'dup.py'}",
        str(second / "echo.sh"): f"also in {first}",
        str(second / "broken.py"): f"also in {first}",  # a broken script keeps its name
        str(tmp_path / "missing"): "unreadable: No such file or directory",
    }


def test_scan_does_not_enter_symlinked_folders_as_pyjojo(tmp_path):
    write(tmp_path / "elsewhere" / "echo.sh", PYJOJO_README_ECHO)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "linked").symlink_to(tmp_path / "elsewhere")
    write(tmp_path / "scripts" / "own.sh", PYJOJO_FIXTURE_ECHO)
    scripts, problems = scan([str(tmp_path / "scripts")])
    assert (sorted(scripts), problems) == (["own"], {})


@pytest.mark.parametrize("pattern", [r"(a+)+", r"(\w+\s?)+", r"(?:a*)*", r"(a{1,2})+",
                                     r"((a+)+b)+", r"(?=(a+)+)x"])
def test_a_pattern_that_can_take_exponential_time_makes_the_script_unusable(pattern):
    with pytest.raises(ScriptError, match="repeat inside a repeat"):
        parse_block(f"# -- jojo --\n# param: v (pattern={pattern})\n# -- jojo --\n")


@pytest.mark.parametrize("pattern", [r"[a-z0-9-]+", r"^[a-z]+(\.[a-z]+)*$", r"(\d+\.)+\d+",
                                     r"([a-z]+-)+", r"(foo|bar)+", r"(\w+\s?)++", r"(?>a+)+"])
def test_a_pattern_whose_repeats_cannot_split_a_value_many_ways_is_taken(pattern):
    block = parse_block(f"# -- jojo --\n# param: v (pattern={pattern})\n# -- jojo --\n")
    assert block["params"][0].pattern.pattern == pattern
