"""Tab completion in bash, answered by the program being completed.

The script ``smanager completion bash`` prints (smanager/cli/completion.py)
runs ``PROG __complete POINT WORD LINE`` on each Tab: LINE and POINT are
bash's COMP_LINE and COMP_POINT, WORD the word readline will replace.  Both
programs answer with this module, which sits beside tshell because the cli
layer may import tshell and not the other way round.

- The answer's first line is its kind: ``words`` (the lines after it go into
  COMPREPLY as they are), ``files`` or ``dirs`` (readline completes file or
  directory names itself), or nothing at all: no words.
- The words come from the program's argparse parser, so they keep step with
  its flags (``from_parser``): flags where the word begins with ``-``, and
  wherever no positional argument is due; a flag's choices after it, file
  names after a FILE or PATH flag, directories after a DIR one; a positional
  argument's choices and a subcommand's words.  A program may supply the
  values of some arguments itself (tshell's hosts and commands).
- The line is read as the shell reads it (quotes, backslashes).  Inside a
  quote left open the words continue it, and readline closes it; elsewhere a
  word with a space in it comes quoted (``'systemstatus uptime'``).
- Bash also ends words at ``:`` and ``=`` (COMP_WORDBREAKS): each answer is
  cut to the part readline replaces, and a word that does not extend what was
  typed before that part is dropped.
- Nothing here fails loudly: a line it cannot follow gets no words.
"""

import argparse
import shlex
from dataclasses import dataclass, field

QUERY = "__complete"  # the first argument that makes a program answer instead of running


@dataclass
class Answer:
    kind: str = "words"  # or "files", "dirs": readline completes names of those itself
    words: list[str] = field(default_factory=list)  # whole words as the program reads them


def answer(argv, out, complete):
    """Write the answer to bash's question ARGV (POINT WORD LINE) on OUT;
    COMPLETE(words, partial) gives it from the words before the one under the
    cursor (the program's name left out) and that word so far.  The exit status."""
    try:
        point, bash_word, line = argv
        typed = line[:int(point)]  # bash counts characters, as the locale reads them
    except ValueError:
        return 2
    words, _ = split_line(typed)
    raw, partial = words[-1]
    found = complete([plain for _, plain in words[1:-1]], partial)
    lines = [found.kind, *(for_readline(found.words, raw, bash_word)
                           if found.kind == "words" else ())]
    out.write("".join(line + "\n" for line in lines if "\n" not in line))
    out.flush()
    return 0


def split_line(text):
    """TEXT, a command line up to the cursor, in words as the shell reads it:
    a list of (as typed, unquoted) pairs whose last is the word under the
    cursor (empty after a space), and the quote left open in it ('' if none)."""
    words, raw, plain, quote, begun = [], "", "", "", False
    chars = iter(text)
    for char in chars:
        if quote:
            raw += char
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                escaped = next(chars, "")
                raw += escaped
                plain += escaped if escaped in '"\\$`' else char + escaped
            else:
                plain += char
        elif char in " \t\n":
            if begun:
                words.append((raw, plain))
                raw, plain, begun = "", "", False
        else:
            begun, raw = True, raw + char
            if char in "'\"":
                quote = char
            elif char == "\\":
                escaped = next(chars, "")
                raw, plain = raw + escaped, plain + escaped
            else:
                plain += char
    words.append((raw, plain))
    return words, quote


def for_readline(candidates, raw, bash_word):
    """CANDIDATES (whole words) as COMPREPLY wants them: the part that replaces
    BASH_WORD, the end of RAW (the word as typed), quoted as RAW leaves it."""
    if not raw.endswith(bash_word):
        return []
    head_words, open_quote = split_line(raw[:len(raw) - len(bash_word)])
    if len(head_words) != 1:
        return []
    head = head_words[0][1]  # what bash leaves in place, unquoted
    replies = []
    for candidate in candidates:
        rest = candidate[len(head):]
        if not candidate.startswith(head) or not rest:
            continue
        if not open_quote:
            replies.append(shlex.quote(rest))
        elif open_quote not in rest:
            replies.append(rest)
    return replies


def from_parser(parser, words, partial, values=None):
    """The Answer completing PARTIAL after WORDS under argparse PARSER.
    VALUES(action, partial, given) may answer for an argument instead (None:
    it does not); GIVEN maps each argument's dest to the values typed so far."""
    options = {name: action for action in parser._actions for name in action.option_strings}
    positionals = [action for action in parser._actions if not action.option_strings]
    given, used, due, pending = {}, set(), 0, None
    for position, word in enumerate(words):
        if pending is not None:
            given.setdefault(pending.dest, []).append(word)
            pending = None
        elif word.startswith("-") and word != "-":
            name, equals, value = word.partition("=")
            action = options.get(name)
            if action is not None:
                used.add(action)
                if equals:
                    given.setdefault(action.dest, []).append(value)
                elif action.nargs != 0:  # a flag with a value: the next word is it
                    pending = action
        elif due < len(positionals):
            action = positionals[due]
            if isinstance(action, argparse._SubParsersAction):
                sub = action.choices.get(word)
                return from_parser(sub, words[position + 1:], partial, values) if sub \
                    else Answer()
            given.setdefault(action.dest, []).append(word)
            if action.nargs not in ("*", "+", argparse.REMAINDER):
                due += 1
    if pending is not None:
        return value_of(pending, partial, values, given)
    name, equals, value = partial.partition("=")
    if partial.startswith("-") and equals:
        action = options.get(name)
        if action is None or action.nargs == 0:
            return Answer()
        found = value_of(action, value, values, given)
        return Answer(found.kind, [f"{name}={word}" for word in found.words])
    if due < len(positionals) and not partial.startswith("-"):
        return value_of(positionals[due], partial, values, given)
    # A flag given once is not offered again, unless it may be repeated.
    return Answer("words", sorted(
        name for name, action in options.items() if name.startswith(partial)
        and (action not in used or isinstance(action, argparse._AppendAction))))


def value_of(action, partial, values, given):
    """What completes PARTIAL as ACTION's value."""
    special = values(action, partial, given) if values else None
    if special is not None:
        return special
    if action.choices:  # in any case: smanager reads --log-level's debug as DEBUG
        return Answer("words", [str(choice) for choice in action.choices
                                if str(choice).lower().startswith(partial.lower())])
    if action.metavar in ("FILE", "PATH"):
        return Answer("files")
    if action.metavar == "DIR":
        return Answer("dirs")
    return Answer()
