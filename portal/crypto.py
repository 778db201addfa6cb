"""Encryption of secrets at rest (cloud credentials, SSH keys, kubeconfigs).

Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`; MultiFernet so keys can be rotated:
the first key in settings.ENCRYPTION_KEYS encrypts, every listed key decrypts.
"""

import json
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

PREFIX = "fernet:"


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return PREFIX + fernet().encrypt(plaintext.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise ValueError("stored secret is not Fernet-encrypted")
    try:
        return fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise ValueError(
            "a stored secret cannot be decrypted: PORTAL_ENCRYPTION_KEYS lacks the key it was "
            "encrypted with"
        ) from None


class EncryptedTextField(models.TextField):
    """A text column whose value is encrypted before it reaches the database.

    The empty string stays empty so "not set" remains visible without decrypting.
    """

    is_secret = True

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value or ""
        return encrypt(value)


class EncryptedJSONField(models.TextField):
    """A dict of secrets (e.g. cloud credentials) stored as one encrypted JSON document."""

    is_secret = True

    def from_db_value(self, value, expression, connection):
        if not value:
            return {}
        return json.loads(decrypt(value))

    def to_python(self, value):
        if isinstance(value, dict):
            return value
        if not value:
            return {}
        return json.loads(value)

    def get_prep_value(self, value):
        if not value:
            return ""
        return encrypt(json.dumps(value, sort_keys=True))
