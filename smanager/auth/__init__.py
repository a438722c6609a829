"""Who is connected and what they may run.  No sockets here.

peer     a connected client: its address, user, level, probation, sessions
levels   read < operate < admin, and the @level decorator
access   the policy: which level a connection gets, what it may run and see
login    login, challenge and auth, with a back-off per address
scram    password verifiers and proofs (SCRAM-SHA-256 style, PBKDF2)
users    the users file
audit    the audit trail, one line per command
"""
