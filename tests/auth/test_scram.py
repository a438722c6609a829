"""Passwords: PBKDF2 verifiers and the challenge-response login (SCRAM-like), pure."""

import pytest
from helpers import FAST

from smanager.auth import scram as passwords


def test_a_verifier_checks_its_password_and_survives_the_file():
    verifier = passwords.Verifier.for_password("correct horse", FAST)
    again = passwords.Verifier.decode(verifier.encode())
    assert again == verifier
    assert again.check_password("correct horse")
    assert not again.check_password("correct hors")
    assert "correct horse" not in verifier.encode()


def test_passwords_typed_in_either_unicode_form_are_the_same():
    verifier = passwords.Verifier.for_password("caf\u00e9", FAST)
    assert verifier.check_password("cafe\u0301")


def login_proof(verifier, user, password, server_nonce="s" * 24):
    """A client's proof for a challenge from ``verifier``: (ClientLogin, nonce, proof)."""
    login = passwords.ClientLogin(user, password)
    nonce = login.nonce + server_nonce
    return login, nonce, login.proof(verifier.challenge(nonce))


def test_a_proof_logs_in_once_for_its_nonce_and_user():
    verifier = passwords.Verifier.for_password("pw", FAST)
    _, nonce, proof = login_proof(verifier, "alice", "pw")
    assert verifier.check_proof("alice", nonce, proof)
    assert not verifier.check_proof("alice", nonce + "x", proof)  # another nonce
    assert not verifier.check_proof("mallory", nonce, proof)  # another user
    _, nonce2, wrong = login_proof(verifier, "alice", "pW")
    assert not verifier.check_proof("alice", nonce2, wrong)
    for junk in ("", "!!!", "AAAA", proof[:-4], "é"):
        assert not verifier.check_proof("alice", nonce, junk)


def test_only_the_real_server_can_sign_the_login():
    verifier = passwords.Verifier.for_password("pw", FAST)
    login, nonce, _ = login_proof(verifier, "alice", "pw")
    signature = verifier.server_signature("alice", nonce)
    assert login.server_is_real(f"logged in as alice (admin); server signature {signature}")
    impostor = passwords.Verifier.for_password("pw", FAST)  # same password, other salt
    assert not login.server_is_real(impostor.server_signature("alice", nonce))
    assert not login.server_is_real("logged in as alice (admin)")
    assert not passwords.ClientLogin("a", "pw").server_is_real(signature)  # no challenge yet


@pytest.mark.parametrize(("text", "message"), [
    ("md5:10000:AAAA:AAAA:AAAA", "not a pbkdf2-sha256 verifier"),
    ("pbkdf2-sha256:1000:AAAA:AAAA:AAAA", "of 10,000 to 10,000,000 iterations"),
    ("pbkdf2-sha256:99999999:AAAA:AAAA:AAAA", "of 10,000 to 10,000,000 iterations"),
    ("pbkdf2-sha256:10000:A!:AAAA:AAAA", "salt and keys must be base64"),
    ("pbkdf2-sha256:10000:AAAA:AAAA:AAAA", "not SHA-256 digests"),
    ("pbkdf2-sha256:10000:AAAA:AAAA", "not enough values"),
])
def test_a_verifier_that_is_not_one_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        passwords.Verifier.decode(text)


@pytest.mark.parametrize(("challenge", "message"), [
    ("nonsense", "not a challenge"),
    ("md5 10000 AAAA {nonce}", "will not answer a md5 challenge"),
    ("pbkdf2-sha256 1000 AAAA {nonce}", "of 1000 iterations"),  # cheap to crack offline
    ("pbkdf2-sha256 2147483648 AAAA {nonce}", "of 2147483648 iterations"),  # a hang
    ("pbkdf2-sha256 10000 AAAA someone-elses-nonce", "does not carry this client's nonce"),
    ("pbkdf2-sha256 10000 AAAA {client}", "does not carry this client's nonce"),
])
def test_a_client_answers_only_challenges_it_trusts(challenge, message):
    login = passwords.ClientLogin("alice", "pw")
    challenge = challenge.format(nonce=login.nonce + "s" * 24, client=login.nonce)
    with pytest.raises(ValueError, match=message):
        login.proof(challenge)


def test_a_decoy_looks_the_same_every_time_and_matches_nothing():
    secret = b"s" * 32
    first = passwords.decoy(secret, "ghost", [FAST, 20_000])
    assert first == passwords.decoy(secret, "ghost", [20_000, FAST])
    assert first != passwords.decoy(secret, "other", [FAST, 20_000])
    assert first.iterations in (FAST, 20_000)
    assert not first.check_password("")
    counts = {passwords.decoy(secret, f"u{n}", [FAST, 20_000]).iterations for n in range(40)}
    assert counts == {FAST, 20_000}  # not always the first user's count
