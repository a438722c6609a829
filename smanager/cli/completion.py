"""``smanager completion bash``: Tab completion for smanager and tshell in bash.

    eval "$(smanager completion bash)"     # in ~/.bashrc

- The script it prints completes both programs.  On Tab it runs the program
  being completed, as typed (so a virtualenv's own copy answers for itself),
  as ``PROG __complete POINT WORD LINE``, and the program answers from its
  own argparse parsers (smanager/tshell/bashcomplete.py): the words keep step
  with the flags of the version installed, and the script never changes.
- smanager: ``users``, ``check-config`` and ``completion`` as the first word,
  else the server's flags; their values: levels and formats, file names
  after a FILE or PATH flag, directories after ``--services``.  After
  ``users``, its flags, actions and levels; after ``check-config``, the
  server's flags again; after ``completion``, ``bash``.
- tshell: see smanager/tshell/completion.py (its servers and their commands,
  from the help index its interactive sessions saved; it never connects).
- Exit status: 0, or 2 for a shell it has no script for (one line on stderr).
"""

import sys

from ..config import OneLineParser, UsageError
from ..tshell.bashcomplete import QUERY, Answer, answer, from_parser
from . import users
from .main import build_parser as server_parser

BASH = r"""# Tab completion for smanager and tshell, from `smanager completion bash`.
# On Tab the program being completed is asked (PROG __complete POINT WORD LINE):
# the first line it answers is a kind, words (the rest are the words), files or dirs.
_smanager_complete() {
    local line kind=
    COMPREPLY=()
    while IFS= read -r line; do
        if [[ -z $kind ]]; then kind=$line; else COMPREPLY+=("$line"); fi
    done < <("$1" __complete "$COMP_POINT" "$2" "$COMP_LINE" </dev/null 2>/dev/null)
    case $kind in
        files) compopt -o default 2>/dev/null ;;
        dirs) compopt -o dirnames 2>/dev/null ;;
    esac
}
complete -F _smanager_complete smanager tshell
"""
SCRIPTS = {"bash": BASH}


def build_parser():
    parser = OneLineParser(prog="smanager completion",
                           description="Print the script that completes smanager and tshell "
                                       "on Tab: eval \"$(smanager completion bash)\" in ~/.bashrc.")
    parser.add_argument("shell", choices=sorted(SCRIPTS))
    return parser


def main(argv):
    """``smanager completion SHELL`` and ``smanager __complete ...``: ARGV whole."""
    if argv[:1] == [QUERY]:
        return answer(argv[1:], sys.stdout, words)
    try:
        args = build_parser().parse_args(argv[1:])
    except UsageError as exc:
        print(f"smanager completion: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(SCRIPTS[args.shell])
    return 0


FIRST_WORDS = {"users": users.build_parser, "check-config": server_parser,
               "completion": build_parser}


def words(typed, partial):
    """The Answer completing PARTIAL after TYPED, smanager's arguments so far."""
    if typed[:1] and typed[0] in FIRST_WORDS:
        return from_parser(FIRST_WORDS[typed[0]](), typed[1:], partial)
    if not typed and not partial.startswith("-"):
        return Answer("words", sorted(word for word in FIRST_WORDS if word.startswith(partial)))
    return from_parser(server_parser(), typed, partial)
