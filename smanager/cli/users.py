"""``smanager users``: manage the users file.

    smanager users --users-file FILE list
    smanager users --users-file FILE add NAME [--level LEVEL]
    smanager users --users-file FILE password NAME
    smanager users --users-file FILE level NAME LEVEL
    smanager users --users-file FILE remove NAME

``--config FILE`` finds the users file in the server's config instead.  Only
``add`` creates the file; every other action needs it to exist.  A password
is asked for twice on the terminal, or read as one line from stdin with
``--password-stdin`` (for scripts); it is never a flag, which anyone could
read in the process list.  Exit status: 0 done, 1 refused (no such user,
already there), 2 bad arguments or an unusable file.
"""

import getpass
import sys

from ..auth import levels, users
from ..auth.scram import ITERATIONS, MIN_ITERATIONS, Verifier
from ..config import Config, ConfigError, OneLineParser, UsageError, read_file


class Refused(Exception):
    """What was asked cannot be done (exit 1)."""


def build_parser():
    parser = OneLineParser(prog="smanager users", description="Manage the users file.")
    parser.add_argument("--users-file", metavar="FILE",
                        help="the users file (only 'add' creates it)")
    parser.add_argument("--config", metavar="FILE", help="the server's config: its users_file")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION",
                                    parser_class=OneLineParser)
    actions.add_parser("list", help="each user and its level")
    add = actions.add_parser("add", help="add a user")
    add.add_argument("--level", default="operate", choices=levels.NAMES)
    password = actions.add_parser("password", help="change a user's password")
    for action in (add, password):
        action.add_argument("name")
        action.add_argument("--password-stdin", action="store_true",
                            help="read the password as one line from stdin")
        action.add_argument("--iterations", type=int, default=ITERATIONS,
                            help=f"PBKDF2 iterations (default {ITERATIONS})")
    change = actions.add_parser("level", help="change a user's level")
    change.add_argument("name")
    change.add_argument("level", choices=levels.NAMES)
    actions.add_parser("remove", help="remove a user").add_argument("name")
    return parser


def users_file(args):
    if args.users_file:
        return args.users_file
    if args.config:
        path = Config().updated(read_file(args.config)).users_file
        if path:
            return path
        raise ConfigError(f"{args.config} sets no users_file")
    raise UsageError("which file? give --users-file FILE or --config FILE")


def read_password(from_stdin):
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise Refused("the passwords differ")
    if not password:
        raise Refused("an empty password is not a password")
    return password


def read_table(path, action):
    """The users in the file; none for ``add`` if there is no file yet."""
    try:
        return users.load(path)
    except FileNotFoundError:
        if action == "add":
            return {}
        raise ConfigError(f"{path} does not exist; 'smanager users add NAME' creates it") \
            from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def run(args, path, out):
    """Carry out one action on the users file."""
    table = read_table(path, args.action)
    name = getattr(args, "name", None)
    if args.action == "list":
        for user in sorted(table.values(), key=lambda u: u.name):
            print(f"{user.name} {user.level}", file=out)
        return
    users.check_name(name)
    if args.action == "add" and name in table:
        raise Refused(f"{name} is already a user; change it with 'password' or 'level'")
    if args.action != "add" and name not in table:
        raise Refused(f"no user {name}")
    if args.action == "remove":
        del table[name]
    elif args.action == "level":
        table[name] = users.User(name, levels.parse(args.level), table[name].verifier)
    else:
        if args.iterations < MIN_ITERATIONS:
            raise UsageError(f"--iterations must be at least {MIN_ITERATIONS}")
        level = levels.parse(args.level) if args.action == "add" else table[name].level
        verifier = Verifier.for_password(read_password(args.password_stdin), args.iterations)
        table[name] = users.User(name, level, verifier)
    try:
        users.save(path, table)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"{args.action}: {name}: done", file=out)


def main(argv):
    try:
        args = build_parser().parse_args(argv)
        path = users_file(args)
        run(args, path, sys.stdout)
    except (UsageError, ConfigError) as exc:
        print(f"smanager users: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        print(f"smanager users: error: {reason}", file=sys.stderr)
        return 2
    except Refused as exc:
        print(f"smanager users: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("smanager users: stopped; nothing changed", file=sys.stderr)
        return 130
    return 0
