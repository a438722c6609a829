"""Templates: a program table plus params, made into sessions on request.

Rules:
- A template is a program table plus params.  instantiate() checks the values
  given against their patterns, then substitutes $NAME and ${NAME} in command
  items, env values and cwd, each item whole, never parsed by a shell.  With
  shell = true the values are exported as variables instead: the shell expands
  them and never runs one as code.  A template is tried at load with its
  defaults (a placeholder for a required value), so a wrong key shows then.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .checks import SpecError, check_keys, check_name, shown, split_command
from .spec import VARIABLE_NAME, ProgramSpec, parse, substitute

PLACEHOLDER = "/placeholder"  # a required value in the load-time try: a path fits anywhere


@dataclass(frozen=True)
class Param:
    name: str
    pattern: re.Pattern
    default: str | None  # None: the value is required


@dataclass(frozen=True)
class Template:
    name: str
    params: tuple[Param, ...]
    table: Mapping = field(default_factory=dict)  # program keys over the defaults, command split
    log_dir: str | None = None  # the service's
    depends_on: tuple[str, ...] = ()

    def instantiate(self, session_id: str, values: Mapping[str, str]) -> ProgramSpec:
        """The spec of session SESSION_ID, given these parameter values."""
        where = f"template {self.name}"
        check_name(f"{where}: session", session_id)
        takes = {param.name: param for param in self.params}
        for key in values:
            if key not in takes:
                names = ", ".join(sorted(takes))
                raise SpecError(f"{where}: unknown parameter {shown(key)}; "
                                + (f"it takes: {names}" if names else "it takes none"))
        final = {}
        for param in self.params:
            value = values.get(param.name, param.default)
            if value is None:
                raise SpecError(f"{where}: parameter {param.name} is required")
            if not param.pattern.fullmatch(value):
                raise SpecError(f"{where}: parameter {param.name} must match {param.pattern.pattern}")
            final[param.name] = value
        return self._spec(session_id, final)

    def _spec(self, name: str, values: dict[str, str]) -> ProgramSpec:
        table = dict(self.table)
        shell = table.get("shell") is True
        env = table.get("env", {})
        if isinstance(env, Mapping):  # else parse() says what is wrong with it
            env = {key: substitute(value, values) if isinstance(value, str) else value
                   for key, value in env.items()}
            table["env"] = {**values, **env} if shell else env
        if isinstance(table.get("command"), list):  # a shell's script is a string, left alone
            table["command"] = [substitute(item, values) if isinstance(item, str) else item
                                for item in table["command"]]
        if isinstance(table.get("cwd"), str):
            table["cwd"] = substitute(table["cwd"], values)
        return parse(f"template {self.name}", name, table, None, self.log_dir,
                     template=self.name, params=tuple(sorted(values.items())))


def parse_template(name: str, table: Mapping, defaults: Mapping | None = None, *,
                   log_dir: str | None = None) -> Template:
    """Template NAME from its TABLE over the service's DEFAULTS, tried once."""
    where = f"template {name}"
    check_name("template", name)
    if not isinstance(table, Mapping):
        raise SpecError(f"{where}: must be a table of settings, not {shown(table)}")
    merged = {**(defaults or {}), **table}
    params = _params(where, merged.pop("params", {}))
    if isinstance(merged.get("command"), str) and merged.get("shell") is not True:
        merged["command"] = split_command(where, merged["command"])  # substituted item by item
    template = Template(name, params, merged, log_dir)
    tried = template._spec(name, {param.name: PLACEHOLDER if param.default is None else param.default
                                  for param in params})
    return replace(template, depends_on=tried.depends_on)


def _params(where: str, table) -> tuple[Param, ...]:
    if not isinstance(table, Mapping):
        raise SpecError(f"{where}: params must be a table of NAME = {{pattern, default}}, "
                        f"not {shown(table)}")
    params = []
    for name, settings in table.items():
        at = f"{where}: param {name}"
        if not VARIABLE_NAME.fullmatch(name) or name == "PORT":
            raise SpecError(f"{where}: param {shown(name)}: a parameter name is letters, digits "
                            "and _, not starting with a digit, and not PORT")
        if not isinstance(settings, Mapping):
            raise SpecError(f"{at}: must be a table {{pattern, default}}, not {shown(settings)}")
        check_keys(at, settings, {"pattern", "default"})
        pattern, default = settings.get("pattern"), settings.get("default")
        if not isinstance(pattern, str):
            raise SpecError(f"{at}: pattern is required: a regular expression the value must match")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise SpecError(f"{at}: pattern is not a valid regex: {exc}") from None
        if default is not None and not isinstance(default, str):
            raise SpecError(f"{at}: default must be a string, not {shown(default)}")
        if default is not None and not compiled.fullmatch(default):
            raise SpecError(f"{at}: default {shown(default)} does not match {pattern}")
        params.append(Param(name, compiled, default))
    return tuple(params)
