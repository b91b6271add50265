"""Signing secrets: made once, shown once, stored sealed.

A secret is `whsec_` and 32 random bytes in base64, as Standard Webhooks' libraries
take it. The gateway needs it back to sign every attempt, so it cannot be hashed:
it is sealed with AES-GCM under a key derived (HKDF-SHA256) from CURSOR_SECRET, or
else AUTH_JWT_SECRET, as the page cursors' key is (app.jobs.cursors), with the
endpoint's id as associated data. A copy of the database alone does not give the
secrets away; changing that gateway secret makes the stored ones unreadable
(rotate each endpoint's secret afterwards). Never logged, never read back by the API.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.jobs.cursors import secret_for
from app.settings import Settings

PREFIX = "whsec_"
SECRET_BYTES = 32
_KEY_INFO = b"jobs-gateway webhook secrets v1"
_NONCE_BYTES = 12


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


class SecretUnreadable(RuntimeError):
    """A stored secret was sealed under another key (the gateway secret changed)."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO)
        return cls(hkdf.derive(secret_for(settings)))

    def seal(self, endpoint_id: uuid.UUID, secret: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), endpoint_id.bytes)
        return base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, endpoint_id: uuid.UUID, stored: str) -> str:
        raw = base64.b64decode(stored)
        try:
            opened = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], endpoint_id.bytes)
        except InvalidTag:
            raise SecretUnreadable(
                f"the signing secret of endpoint {endpoint_id} cannot be opened: "
                "CURSOR_SECRET/AUTH_JWT_SECRET changed; rotate the endpoint's secret"
            ) from None
        return opened.decode()
