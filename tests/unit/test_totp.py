"""TOTP against the test vectors of RFC 6238 appendix B and RFC 4226 appendix D."""

from __future__ import annotations

import pytest

from provisioning.accounts import totp

SEED_SHA1 = b"12345678901234567890"
SEED_SHA256 = b"12345678901234567890123456789012"
SEED_SHA512 = b"1234567890" * 6 + b"1234"

RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]

RFC4226 = ["755224", "287082", "359152", "969429", "338314",
           "254676", "287922", "162583", "399871", "520489"]


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), RFC6238)
def test_rfc6238_vectors(at: int, sha1: str, sha256: str, sha512: str) -> None:
    assert totp.totp(SEED_SHA1, at, digits=8, digest="sha1") == sha1
    assert totp.totp(SEED_SHA256, at, digits=8, digest="sha256") == sha256
    assert totp.totp(SEED_SHA512, at, digits=8, digest="sha512") == sha512


@pytest.mark.parametrize(("counter", "code"), list(enumerate(RFC4226)))
def test_rfc4226_vectors(counter: int, code: str) -> None:
    assert totp.hotp(SEED_SHA1, counter) == code


def test_a_code_matches_its_own_and_neighbouring_steps_only() -> None:
    at = 1_700_000_000
    code = totp.totp(SEED_SHA1, at)
    assert totp.match_step(SEED_SHA1, code, at) == at // 30
    assert totp.match_step(SEED_SHA1, code, at + 30) == at // 30  # one step of clock drift
    assert totp.match_step(SEED_SHA1, code, at + 90) is None
    assert totp.match_step(SEED_SHA1, "000000" if code != "000000" else "111111", at) is None


def test_a_used_step_cannot_be_replayed() -> None:
    at = 1_700_000_000
    code = totp.totp(SEED_SHA1, at)
    step = totp.match_step(SEED_SHA1, code, at)
    assert step is not None
    assert totp.match_step(SEED_SHA1, code, at, after_step=step) is None
    later = totp.totp(SEED_SHA1, at + 30)
    assert totp.match_step(SEED_SHA1, later, at + 30, after_step=step) == step + 1


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12345a", "１２３４５６"])
def test_malformed_codes_never_match(code: str) -> None:
    assert totp.match_step(SEED_SHA1, code, 59) is None


def test_secrets_round_trip_and_bad_ones_are_refused() -> None:
    secret = totp.new_secret()
    assert len(totp.decode_secret(secret)) == 20
    assert totp.decode_secret(secret.lower()) == totp.decode_secret(secret)
    with pytest.raises(totp.InvalidSecret):
        totp.decode_secret("not base32!")
    with pytest.raises(totp.InvalidSecret):
        totp.decode_secret("GEZDGNBV")  # 5 bytes: too short


def test_provisioning_uri_names_issuer_and_account() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", account="ops@example.com", issuer="vpngw")
    assert uri.startswith("otpauth://totp/vpngw:ops@example.com?")
    assert "secret=JBSWY3DPEHPK3PXP" in uri and "issuer=vpngw" in uri
