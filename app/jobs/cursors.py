"""Page cursors: a job's position in the list, sealed for one tenant.

A cursor is AES-SIV (RFC 5297, deterministic authenticated encryption, from the
`cryptography` package) of the job's 64-bit `seq`, with the tenant and a format
version as associated data, in URL-safe base64 without padding: 32 characters.
The sequence is shared by all tenants, so a readable position would tell one
tenant how many jobs the others created; sealed, a cursor says nothing, the same
position gives different cursors in different tenants, and a cursor opens only for
the tenant it was given to. Anything else (another tenant's cursor, an edited or
truncated one, trailing junk, the old readable `job:<seq>` format) is refused as
one `BAD_USER_INPUT`: the message cannot tell which, so it leaks nothing either.

Deterministic on purpose: the same job always has the same cursor, so clients may
compare or cache them, and no random nonce has to be stored in the cursor.

The key is derived (HKDF-SHA256) from `CURSOR_SECRET` or else `AUTH_JWT_SECRET`,
so every process and restart with the same settings reads the others' cursors;
changing that secret makes earlier cursors `BAD_USER_INPUT` (clients restart from
the first page). In open mode (one tenant, loopback only) without either secret
the key comes from a fixed string: nothing to hide from the only tenant there is.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.errors import InvalidInput
from app.jobs.model import quoted
from app.settings import CURSOR_SECRET_NEEDED, Settings, SettingsError

# Bound into every cursor: a new format (or key scheme) gets a new version, and
# cursors of the old one stop opening instead of being misread.
_VERSION = b"jobs-gateway cursor v1"
_KEY_INFO = b"jobs-gateway cursor key v1"
_OPEN_MODE_SECRET = b"jobs-gateway open mode: one tenant, loopback only"
_SEQ_BYTES = 8
# 8 bytes of position + AES-SIV's 16-byte tag = 24 bytes = 32 base64 characters,
# no padding and no unused bits: each position has exactly one spelling.
_CURSOR = re.compile(r"[A-Za-z0-9_-]{32}")


class CursorCodec:
    """Seals and opens positions; one per app, shared by GraphQL and REST."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESSIV(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> CursorCodec:
        return cls(derive_key(secret_for(settings)))

    def encode(self, tenant: str, seq: int) -> str:
        sealed = self._aead.encrypt(seq.to_bytes(_SEQ_BYTES, "big"), _context(tenant))
        return base64.urlsafe_b64encode(sealed).decode("ascii")

    def decode(self, tenant: str, cursor: str, field: str) -> int:
        """The position `cursor` seals for `tenant`; `InvalidInput` naming `field` if none."""
        # fullmatch, not b64decode alone: that one skips characters it does not know.
        if _CURSOR.fullmatch(cursor):
            try:
                opened = self._aead.decrypt(
                    base64.urlsafe_b64decode(cursor.encode("ascii")), _context(tenant)
                )
            except (InvalidTag, binascii.Error):
                pass
            else:
                return int.from_bytes(opened, "big")
        raise InvalidInput(field, f"{quoted(cursor)} is not a cursor of this list")


def secret_for(settings: Settings) -> bytes:
    if settings.cursor_secret is not None:
        return settings.cursor_secret.encode()
    if settings.auth_jwt_secret is not None:
        return settings.auth_jwt_secret.encode()
    if settings.open_mode:
        return _OPEN_MODE_SECRET
    raise SettingsError(CURSOR_SECRET_NEEDED)


def derive_key(secret: bytes) -> bytes:
    # A key of its own (not the JWT secret itself): a cursor never helps forge a token.
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO)
    return hkdf.derive(secret)


def _context(tenant: str) -> list[bytes]:
    return [_VERSION, tenant.encode()]
