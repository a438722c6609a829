"""Passwords: how one is stored, checked, and proved without crossing the wire.

This is SCRAM's scheme (RFC 5802) with PBKDF2-HMAC-SHA-256, in a line-based form:

    SaltedPassword = PBKDF2(password, salt, iterations)
    ClientKey      = HMAC(SaltedPassword, "Client Key")
    StoredKey      = SHA-256(ClientKey)          <- all the users file keeps

``login USER PASSWORD`` sends the password; the server derives StoredKey from
it and compares.  ``challenge USER`` answers ``pbkdf2-sha256 ITERATIONS SALT
NONCE`` and ``auth PROOF`` sends

    Proof = ClientKey XOR HMAC(StoredKey, "USER:NONCE")

from which the server recovers ClientKey and checks its hash.  The password
never crosses the wire, a proof is good for one nonce only, and the file
cannot be used to log in (StoredKey is not ClientKey).
"""

import base64
import binascii
import functools
import hashlib
import hmac
import os
import unicodedata
from dataclasses import dataclass

SCHEME = "pbkdf2-sha256"
ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA-256
MIN_ITERATIONS = 1000
SALT_BYTES = 16


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _unb64(text):
    return base64.b64decode(text.encode("ascii"), validate=True)


def _hmac(key, message):
    return hmac.digest(key, message, "sha256")


def client_key(password, salt, iterations):
    """ClientKey for a password (NFC-normalised, so every keyboard types the same bytes)."""
    salted = hashlib.pbkdf2_hmac("sha256", unicodedata.normalize("NFC", password).encode(),
                                 salt, iterations)
    return _hmac(salted, b"Client Key")


def _signature(stored_key, user, nonce):
    return _hmac(stored_key, f"{user}:{nonce}".encode())


@dataclass(frozen=True)
class Verifier:
    """What is stored for one user: enough to check a password or a proof, not to make one."""

    iterations: int
    salt: bytes
    stored_key: bytes

    @classmethod
    def for_password(cls, password, iterations=ITERATIONS):
        salt = os.urandom(SALT_BYTES)
        return cls(iterations, salt, hashlib.sha256(client_key(password, salt, iterations)).digest())

    def encode(self):
        return f"{SCHEME}:{self.iterations}:{_b64(self.salt)}:{_b64(self.stored_key)}"

    @classmethod
    def decode(cls, text):
        """ValueError if ``text`` is not what encode() writes."""
        scheme, iterations, salt, key = text.split(":")
        if scheme != SCHEME or not iterations.isdigit() or int(iterations) < MIN_ITERATIONS:
            raise ValueError(f"not a {SCHEME} verifier with at least {MIN_ITERATIONS} iterations")
        try:
            verifier = cls(int(iterations), _unb64(salt), _unb64(key))
        except (binascii.Error, UnicodeError):
            raise ValueError("salt and key must be base64") from None
        if len(verifier.stored_key) != hashlib.sha256().digest_size:
            raise ValueError("the key is not a SHA-256 digest")
        return verifier

    def challenge(self, nonce):
        """The text ``challenge`` answers."""
        return f"{SCHEME} {self.iterations} {_b64(self.salt)} {nonce}"

    def check_password(self, password):
        """True if ``password`` is the one stored (slow on purpose: PBKDF2)."""
        key = client_key(password, self.salt, self.iterations)
        return hmac.compare_digest(hashlib.sha256(key).digest(), self.stored_key)

    def check_proof(self, user, nonce, proof):
        """True if ``proof`` (base64) shows the password for this user and nonce."""
        try:
            sent = _unb64(proof)
        except (binascii.Error, UnicodeError, ValueError):
            return False
        signature = _signature(self.stored_key, user, nonce)
        if len(sent) != len(signature):
            return False
        key = bytes(a ^ b for a, b in zip(sent, signature))
        return hmac.compare_digest(hashlib.sha256(key).digest(), self.stored_key)


def decoy(secret, user, iterations=ITERATIONS):
    """A verifier for a user who does not exist: the same salt every time (so
    ``challenge`` cannot tell who exists), and a key nobody can match."""
    salt = _hmac(secret, f"salt:{user}".encode())[:SALT_BYTES]
    return Verifier(iterations, salt, _hmac(secret, f"key:{user}".encode()))


def answer(challenge, user, password):
    """The client's side: the proof for a ``challenge`` reply.  ValueError if
    the reply is not a challenge this client can answer."""
    try:
        scheme, iterations, salt, nonce = challenge.split()
        iterations, salt = int(iterations), _unb64(salt)
    except (ValueError, binascii.Error, UnicodeError):
        raise ValueError(f"not a challenge: {challenge[:80]!r}") from None
    if scheme != SCHEME or iterations < MIN_ITERATIONS:
        raise ValueError(f"cannot answer a {scheme} challenge of {iterations} iterations")
    key = _remembered_client_key(password, salt, iterations)
    signature = _signature(hashlib.sha256(key).digest(), user, nonce)
    return _b64(bytes(a ^ b for a, b in zip(key, signature)))


# A client asking many servers that share one users file derives the key once.
# (Only clients: a server that remembered keys would keep every guess.)
_remembered_client_key = functools.lru_cache(maxsize=16)(client_key)
