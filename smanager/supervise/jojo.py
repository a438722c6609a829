"""Pyjojo's script directories, read: files in, frozen Scripts (and why others cannot run) out.

Rules:
- scan() walks each directory as Pyjojo did (recursively; symlinked folders not entered), in
  sorted order, skipping names that start with ".".  An executable regular file is a script; a
  file that is not executable is a problem only if it opens a jojo block (so a README beside the
  scripts is not); a file that cannot be read (a broken symlink, a FIFO) is a problem.  The first
  file to give a name owns it, broken or not; a later one is a problem keyed by its path ("also
  in DIR" when the owner is in another directory, else "same name as PATH"), as is a directory
  that cannot be listed.  Every other problem is keyed by the file's name; each is one line.
- A name is the path relative to its directory, the file name's extension (from its last ".")
  dropped, each run of characters other than ASCII letters, digits and "_" made one "_":
  deploy/web-app.sh -> deploy_web_app, a.b.sh -> a_b (as Pyjojo).  Unlike Pyjojo, a file without
  "." keeps its name (noext -> noext; Pyjojo made "", which none of its URLs could reach), and a
  "." in a folder name is no extension (conf.d/run -> conf_d_run; Pyjojo: "conf").
- The block is the comment lines ("#" in the first column) from one whose text starts with
  "-- jojo --" to the next such line; only the first block counts.  In it, leading "#"s and blanks
  are dropped, lines without ":" (and lines that are not comments) are skipped, and the rest are
  KEY: VALUE split at the first ":" only, both stripped, keys matched exactly (as Pyjojo):
      description: TEXT                      ":" and "-" allowed           [none]
      param: NAME [- TEXT] [(ATTRIBUTES)]    one per line
      filtered_params: A, B                  declared params shown as FILTERED (secret)
      tags: A, B
      output: split | combined                                             [split]
      lock: True | False | wait | fail | none    any case; True = wait     [none]
      http_method: get | post | put | delete     shown, never used         [post]
      timeout: SECONDS                       smanager's, above 0           [300]
      level: read | operate | admin          smanager's                    [operate]
  Any other key is ignored, as Pyjojo ignores it.  A bad value of a known key, a param without a
  valid name, an unterminated block: ScriptError "line 7: output must be split or combined, not
  'sideways'".
- A param's NAME is an identifier, unique ignoring case (the script sees it upper-cased in its
  environment).  The first "-" ends the name, so "param: dry-run" is "dry" described "run", as
  in Pyjojo.  ATTRIBUTES is a parenthesised list closing the line, items separated by ", ":
  required, secret, default=VALUE, pattern=REGEX.  pattern= takes everything up to the final
  ")", so it comes last.  The parenthesis is an attribute list only when one of its items is an
  attribute; "host - the host (fqdn)" keeps the description Pyjojo gave it, while "(fqdn,
  required)" is a ScriptError.  A pattern must match the whole value, and the default too;
  required and default= exclude each other.  A pattern that can take exponential time (a
  repeat in a repeat, regexcheck.py) is a ScriptError: matching it would stall the server.
- Old Pyjojo reads "param: text - text to echo (required, secret)" as "text" described "text to
  echo (required, secret)", and ignores timeout and level; "lock: wait" is False to it.  But it
  splits a line at every ":" and a param at every "-" and fails its whole directory on a third
  part, so a ":" or "-" anywhere in such a line (a description "a: b", pattern=[a-z]+,
  default=http://x) breaks old Pyjojo.  Keep those out of directories it still reads.
- Only a file's first MiB is read: a script's block must lie in it.
"""

import math
import os
import re
import stat
from dataclasses import dataclass, replace
from functools import partial

from .regexcheck import nested_repeat

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MARKER = "-- jojo --"
LOCKS = ("True", "False", "wait", "fail", "none")
LOCK_MEANINGS = {"true": "wait", "false": "none"}  # Pyjojo's lock: True serialises the runs
FLAGS = ("required", "secret")
VALUED = ("default", "pattern")
MAX_READ = 1 << 20
_MARKER_LINE = re.compile(r"^#[# \t]*" + MARKER, re.MULTILINE)
_NOT_WORD = re.compile(r"\W+", re.ASCII)
_MISPLACED_PATTERN = re.compile(r", (?:required|secret|default=)")


class ScriptError(ValueError):
    """Why a script cannot be used, one line."""


@dataclass(frozen=True)
class ScriptParam:
    name: str
    description: str = ""
    pattern: re.Pattern | None = None  # must match the whole value
    required: bool = False
    default: str | None = None
    secret: bool = False  # the secret attribute, or named in filtered_params


@dataclass(frozen=True)
class Script:
    name: str
    path: str
    description: str | None
    params: tuple[ScriptParam, ...]
    filtered_params: tuple[str, ...]
    tags: tuple[str, ...]
    output: str = "split"
    lock: str = "none"
    timeout: float = 300.0
    level: str = "operate"
    http_method: str = "post"

    def metadata(self) -> dict:
        """Pyjojo's OPTIONS shape, plus smanager's lock_mode, timeout, level and param attributes."""
        return {
            "filename": self.path, "http_method": self.http_method, "name": self.name,
            "description": self.description,
            "params": [{"name": p.name, "description": p.description,
                        "pattern": p.pattern.pattern if p.pattern else None,
                        "required": p.required, "default": p.default, "secret": p.secret}
                       for p in self.params],
            "filtered_params": list(self.filtered_params), "tags": list(self.tags),
            "output": self.output, "lock": self.lock != "none",
            "lock_mode": self.lock, "timeout": self.timeout, "level": self.level}

    def is_secret(self, name: str) -> bool:
        return name in self.filtered_params or any(p.name == name and p.secret for p in self.params)


def script_name(relative_path: str) -> str:
    folder, _, file_name = relative_path.rpartition("/")
    stem = file_name.rpartition(".")[0]
    path = (folder + "/" if folder else "") + (stem or file_name)
    return _NOT_WORD.sub("_", path)


def parse_block(text: str, where: str = "") -> dict:
    """The Script fields a block sets (description, params, filtered_params, tags, output, lock,
    timeout, level, http_method); {} without a block.  where prefixes the error messages."""
    fields, params, filtered, tags = {}, [], [], []
    for number, key, value in _block_entries(text, where):
        try:
            if key == "param":
                params.append((number, _param(value)))
            elif key == "filtered_params":
                filtered += [(number, name) for name in _comma_list(value)]
            elif key == "tags":
                tags += _comma_list(value)
            elif key in SETTINGS:
                fields[key] = SETTINGS[key](value)
        except ScriptError as why:
            raise _at(where, number, why) from None
    declared = {}
    for number, param in params:
        first = declared.setdefault(param.name.upper(), param)
        if first is not param:
            raise _at(where, number, f"parameter {param.name!r} repeats {first.name!r}: "
                                     f"both are ${param.name.upper()}")
    names = {param.name for _, param in params}
    for number, name in filtered:
        if name not in names:
            raise _at(where, number, f"filtered parameter {name!r} is not declared by a param line")
    filtered_names = tuple(dict.fromkeys(name for _, name in filtered))
    if params:
        fields["params"] = tuple(replace(p, secret=True) if p.name in filtered_names else p
                                 for _, p in params)
    if filtered_names:
        fields["filtered_params"] = filtered_names
    if tags:
        fields["tags"] = tuple(dict.fromkeys(tags))
    return fields


def load_script(path: str, name: str) -> Script:
    return _load(path, name, _read(path))


def scan(directories: list[str]) -> tuple[dict[str, Script], dict[str, str]]:
    scripts, problems, owners = {}, {}, {}  # owners: name -> (directory, path) that claimed it
    for directory in directories:
        for relative in _files(directory, problems):
            path = os.path.abspath(os.path.join(directory, relative))
            name = script_name(relative)
            try:
                text = _read(path)
                if not os.access(path, os.X_OK) and not _MARKER_LINE.search(text):
                    continue  # a README or a data file beside the scripts
                outcome = _load(path, name, text)
            except ScriptError as error:
                outcome = str(error)
            if name in owners:
                first_directory, first_path = owners[name]
                problems[path] = (f"also in {first_directory}" if first_directory != directory
                                  else f"same name as {first_path}")
                continue
            owners[name] = (directory, path)
            if isinstance(outcome, Script):
                scripts[name] = outcome
            else:
                problems[name] = outcome
    return scripts, problems


def matches(script: Script, tags=(), any_tags=(), not_tags=()) -> bool:
    """Pyjojo's filters, combinable: every one of tags, one of any_tags, none of not_tags."""
    have = set(script.tags)
    every, one, none = ({tag for tag in group if tag} for group in (tags, any_tags, not_tags))
    return every <= have and (not one or bool(one & have)) and not none & have


def _files(directory, problems):
    """Paths relative to directory, sorted, hidden entries skipped; unlistable folders are problems."""
    def unlistable(error):
        problems[error.filename] = f"unreadable: {error.strerror}"
    for folder, subfolders, files in os.walk(directory, onerror=unlistable):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for file_name in sorted(files):
            if not file_name.startswith("."):
                yield os.path.relpath(os.path.join(folder, file_name), directory)


def _read(path):
    """The file's first MiB as text; a FIFO is refused before anything waits on it."""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ScriptError("not a regular file")
            return file.read(MAX_READ).decode("utf-8", "replace")
    except OSError as error:
        raise ScriptError(f"unreadable: {error.strerror}") from None


def _load(path, name, text):
    if not os.access(path, os.X_OK):
        raise ScriptError("not executable")
    fields = {"description": None, "params": (), "filtered_params": (), "tags": ()}
    return Script(name=name, path=path, **(fields | parse_block(text)))


def _block_entries(text, where):
    """(line number, key, value) of the first block's KEY: VALUE lines."""
    opened, entries = None, []
    for number, line in enumerate(text.split("\n"), 1):
        if _MARKER_LINE.match(line):
            if opened:
                return entries
            opened = number
        elif opened and line.startswith("#"):
            key, colon, value = line.lstrip("# \t").partition(":")
            if colon:
                entries.append((number, key.strip(), value.strip()))
    if opened:
        raise _at(where, opened, f"the block opened here is never closed by '# {MARKER}'")
    return []


def _at(where, number, why):
    return ScriptError(f"{where} line {number}: {why}" if where else f"line {number}: {why}")


def _param(value):
    body, attributes = _split_attributes(value)
    name, _, description = body.partition("-")
    name = name.strip()
    if not name:
        raise ScriptError("param needs a name: param: NAME [- DESCRIPTION]")
    if not IDENTIFIER.fullmatch(name):
        raise ScriptError(f"parameter name {name!r} must be letters, digits and _, "
                          "not starting with a digit")
    given = {}
    for item in attributes:
        key, equals, text = item.partition("=")
        if not ((key in FLAGS and not equals) or (key in VALUED and equals)):
            raise ScriptError(f"unknown attribute {item!r} of {name!r} "
                              "(known: required, secret, default=VALUE, pattern=REGEX)")
        if key in given:
            raise ScriptError(f"attribute {key!r} of {name!r} given twice")
        given[key] = text
    pattern, default = None, given.get("default")
    if "pattern" in given:
        if _MISPLACED_PATTERN.search(given["pattern"]):
            raise ScriptError("pattern= must come last: it takes everything up to the final ')'")
        try:
            pattern = re.compile(given["pattern"])
        except re.error as error:
            raise ScriptError(f"pattern of {name!r} is not a regular expression: {error}") from None
        if risk := nested_repeat(given["pattern"]):
            raise ScriptError(f"pattern of {name!r}: {risk}")
    if default is not None and "required" in given:
        raise ScriptError(f"{name!r} cannot be both required and have a default")
    if default is not None and pattern and not pattern.fullmatch(default):
        raise ScriptError(f"default {default!r} of {name!r} does not match its pattern")
    return ScriptParam(name, description.strip(), pattern, "required" in given, default,
                       "secret" in given)


def _split_attributes(value):
    """(the rest, attribute items): from the first "(" whose list up to the final ")" names an
    attribute; else (value, [])."""
    if value.endswith(")"):
        for start in (i for i, char in enumerate(value) if char == "("):
            items = _items(value[start + 1:-1])
            if any(item in FLAGS or item.startswith(("default=", "pattern=")) for item in items):
                return value[:start], items
    return value, []


def _items(listed):
    items = []
    while True:
        listed = listed.lstrip()
        if listed.startswith("pattern="):
            return items + [listed]
        item, comma, listed = listed.partition(", ")
        items.append(item.strip())
        if not comma:
            return items


def _comma_list(value):
    return [item.strip() for item in value.split(",") if item.strip()]


def _choice(key, allowed, value):
    """value lower-cased, if it is one of allowed in any case."""
    if value.lower() not in (choice.lower() for choice in allowed):
        raise ScriptError(f"{key} must be {', '.join(allowed[:-1])} or {allowed[-1]}, not {value!r}")
    return value.lower()


def _lock(value):
    choice = _choice("lock", LOCKS, value)
    return LOCK_MEANINGS.get(choice, choice)


def _timeout(value):
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ScriptError(f"timeout must be a number of seconds above 0, not {value!r}")
    return seconds


SETTINGS = {  # key: its value checked
    "description": str,
    "output": partial(_choice, "output", ("split", "combined")),
    "lock": _lock,
    "http_method": partial(_choice, "http_method", ("get", "post", "put", "delete")),
    "level": partial(_choice, "level", ("read", "operate", "admin")),
    "timeout": _timeout,
}
