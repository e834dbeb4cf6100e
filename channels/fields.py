"""A JSON field encrypted at rest with Fernet; keys come from settings.FIELD_ENCRYPTION_KEYS."""

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


def _fernet() -> MultiFernet:
    keys = settings.FIELD_ENCRYPTION_KEYS
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty: channel credentials cannot be encrypted.")
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def seal(text: str) -> str:
    """A short secret (a one-time code) sealed with the same keys as the credentials."""
    return _fernet().encrypt(text.encode()).decode()


def unseal(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


class EncryptedJSONField(models.TextField):
    """Stores a dict as a Fernet token; the first key encrypts, every key decrypts (rotation)."""

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return {}
        try:
            return json.loads(_fernet().decrypt(value.encode()))
        except InvalidToken as err:
            raise ImproperlyConfigured("A stored credential cannot be decrypted with FIELD_ENCRYPTION_KEYS.") from err

    def to_python(self, value):
        if isinstance(value, dict):
            return value
        if value in (None, ""):
            return {}
        return json.loads(value)

    def get_prep_value(self, value):
        if value in (None, {}, ""):
            return ""
        return _fernet().encrypt(json.dumps(value, ensure_ascii=False).encode()).decode()

    def value_to_string(self, obj):
        # Dumps (dumpdata, export) never carry secrets in clear.
        return ""
