"""Fields encrypted at rest with Fernet (keys from settings.FIELD_ENCRYPTION_KEYS, the first
encrypts, every key decrypts: rotation), and keyed hashes that let an encrypted address be found
by equality (HMAC-SHA256 keyed by settings.FIELD_HASH_KEY)."""

import functools
import hashlib
import hmac
import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models.query_utils import DeferredAttribute


def _fernet() -> MultiFernet:
    keys = settings.FIELD_ENCRYPTION_KEYS
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty: channel credentials cannot be encrypted.")
    return _fernet_for(tuple(keys))


@functools.lru_cache(maxsize=4)
def _fernet_for(keys: tuple) -> MultiFernet:
    # Built once per key list: a fan-out encrypts and decrypts many addresses.
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def seal(text: str) -> str:
    """A short secret (a one-time code, an address) sealed with the same keys as the credentials."""
    return _fernet().encrypt(text.encode()).decode()


def unseal(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def hash_key() -> bytes:
    """FIELD_HASH_KEY, or (when unset) a key derived from SECRET_KEY. Changing either changes
    every hash: `manage.py directory_rehash` recomputes them from the decrypted addresses."""
    return _hash_key_for(getattr(settings, "FIELD_HASH_KEY", ""), settings.SECRET_KEY)


@functools.lru_cache(maxsize=4)
def _hash_key_for(configured: str, secret_key: str) -> bytes:
    if configured:
        return configured.encode()
    return hmac.new(secret_key.encode(), b"notifycenter field hash key", hashlib.sha256).digest()


def normalized(kind: str, value: str) -> str:
    """One spelling per address: a mainland phone with or without +86 is one phone."""
    value = (value or "").strip()
    return value.removeprefix("+86") if kind == "phone" else value


def keyed_hash(kind: str, value: str) -> str:
    """HMAC-SHA256 of an address, per kind (a phone and an openid never share a hash); "" for none."""
    value = normalized(kind, value)
    if not value:
        return ""
    return hmac.new(hash_key(), f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()


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


class Sealed:
    """A value as read from the table, still encrypted: decrypted on first access (most reads of
    a recipient, an event's fan-out among them, need no address), written back as it was."""

    __slots__ = ("token",)

    def __init__(self, token: str):
        self.token = token


class SealedAttribute(DeferredAttribute):
    def __get__(self, instance, cls=None):
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Sealed):
            value = self.field.open(value.token)
            instance.__dict__[self.field.attname] = value
        return value

    def __set__(self, instance, value):
        # A data descriptor, so that reads come through __get__ even once the value is set.
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """A personal address (a phone, an openid) kept as a Fernet token, decrypted when read.
    `max_length` bounds the clear value (forms, validation), not the column."""

    descriptor_class = SealedAttribute
    empty = ""
    # pre_save returns the value as set: a plain row's value is prepared the same (channels/rows.py).
    pre_save_is_value = True

    def open(self, token: str):
        try:
            return self.decode(_fernet().decrypt(token.encode()).decode())
        except InvalidToken as err:
            raise ImproperlyConfigured("A stored address cannot be decrypted with FIELD_ENCRYPTION_KEYS.") from err

    def decode(self, text: str):
        return text

    def encode(self, value) -> str:
        return str(value)

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return self.empty_value()
        return Sealed(value)

    def empty_value(self):
        return self.empty

    def pre_save(self, model_instance, add):
        # An address nobody touched is written back as the token it was read as.
        return model_instance.__dict__.get(self.attname, self.empty_value())

    def get_prep_value(self, value):
        if isinstance(value, Sealed):
            return value.token
        if value in (None, "", [], self.empty):
            return ""
        return _fernet().encrypt(self.encode(value).encode()).decode()

    def to_python(self, value):
        if isinstance(value, Sealed):
            return self.open(value.token)
        return value if value is not None else self.empty_value()

    def value_to_string(self, obj):
        # Dumps (dumpdata, fixtures) never carry an address in clear.
        return ""

    def formfield(self, **kwargs):
        from django import forms

        return forms.CharField(**{"max_length": self.max_length, "required": not self.blank, **kwargs})


class EncryptedListField(EncryptedTextField):
    """A list of addresses (push registration ids), encrypted as one JSON token."""

    def empty_value(self):
        return []

    def decode(self, text: str):
        return json.loads(text)

    def encode(self, value) -> str:
        return json.dumps(list(value), ensure_ascii=False)

    def to_python(self, value):
        if isinstance(value, str):
            return json.loads(value) if value else []
        return super().to_python(value)

    def formfield(self, **kwargs):
        from django import forms

        return forms.JSONField(**{"required": not self.blank, **kwargs})


class KeyedHashField(models.CharField):
    """The keyed hash of another field's address, recomputed when that address was set in this
    process; an address read and not touched keeps the hash it was stored with."""

    def __init__(self, *args, source: str = "", **kwargs):
        self.source = source
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["source"] = self.source
        for key, value in (("max_length", 64), ("blank", True), ("default", ""), ("editable", False)):
            if kwargs.get(key) == value:
                kwargs.pop(key)
        return name, path, args, kwargs

    def pre_save(self, model_instance, add):
        current = model_instance.__dict__.get(self.source)
        if isinstance(current, Sealed):
            return getattr(model_instance, self.attname)
        digest = keyed_hash(self.source, current or "")
        setattr(model_instance, self.attname, digest)
        return digest
