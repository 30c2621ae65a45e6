"""Checks on cryptographic inputs that the cryptography library leaves to its callers."""
