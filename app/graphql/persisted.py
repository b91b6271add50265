"""Persisted operations: a request names its document by id instead of sending it.

One lookup (`PersistedDocuments.resolve`) for GraphQL over HTTP (POST and GET) and
both WebSocket protocols, serving two things frontends expect:

- **Automatic persisted queries** (Apollo's APQ, `@apollo/client`'s persisted-query
  link): a request carries `extensions.persistedQuery = {version: 1, sha256Hash}`.
  With the document too, the hash is checked and the document kept; with the hash
  alone, the kept document runs, or the answer is `PersistedQueryNotFound` (code
  PERSISTED_QUERY_NOT_FOUND, HTTP 200, as the link expects) and the link sends the
  document again. Documents are kept per process in a bounded LRU
  (PERSISTED_QUERIES_KEPT documents of at most KEPT_CHARS characters each):
  another process, or a restart, answers "not found" once and is taught again, so
  with several processes no error reaches the client.
- **Trusted documents** (TRUSTED_DOCUMENTS: a JSON manifest `{id: document}`, as
  GraphQL Code Generator's client preset writes `persisted-documents.json` and
  relay-compiler writes `persisted_queries.json`): requests name a listed document by
  `extensions.persistedQuery.sha256Hash`, `documentId` (GraphQL-over-HTTP's draft,
  optionally `sha256:`-prefixed) or `doc_id` (Relay's examples). Any other document is
  OPERATION_NOT_TRUSTED, unless the caller may send ad hoc documents
  (TRUSTED_DOCUMENTS_ADHOC=scope: a token with the `graphql:adhoc` scope, and open
  mode, whose caller holds every scope; =refuse: nobody).

A listed or kept document is the same text every time, so strawberry's parser and
validation caches (app/graphql/limits.py) serve it without parsing or validating again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.auth import ADHOC, Caller
from app.errors import AppError, InvalidInput
from app.lru import LRU
from app.settings import Settings, SettingsError

PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
OPERATION_NOT_TRUSTED = "OPERATION_NOT_TRUSTED"

# An id as the tools write it may carry its algorithm (`sha256:...`, the draft's form).
_PREFIX = re.compile(r"^(?:sha256|sha1|md5):", re.IGNORECASE)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# The longest document APQ keeps (characters): this API's real documents are a few
# hundred, GraphiQL's schema query ~2,000; a longer one runs but is sent every time.
# So the store holds at most PERSISTED_QUERIES_KEPT x 16 KiB of text.
KEPT_CHARS = 16_384


class PersistedQueryNotFound(AppError):
    """The id names no document this process knows: send the document with it."""

    code = PERSISTED_QUERY_NOT_FOUND
    # Apollo's link reads the error from a 200 answer (GET and POST) and retries.
    http_status = 200

    def __init__(self) -> None:
        # The exact message Apollo's link and other APQ clients look for.
        super().__init__("PersistedQueryNotFound")


class PersistedQueryNotSupported(AppError):
    """Neither APQ nor trusted documents are on: the link stops sending hashes."""

    code = PERSISTED_QUERY_NOT_SUPPORTED
    http_status = 200

    def __init__(self) -> None:
        super().__init__("PersistedQueryNotSupported")


class NotTrusted(AppError):
    code = OPERATION_NOT_TRUSTED
    http_status = 403

    def __init__(self) -> None:
        super().__init__(
            "only trusted documents run here (TRUSTED_DOCUMENTS): this document is not in"
            " the manifest; send a listed operation's id (extensions.persistedQuery.sha256Hash"
            " or documentId), or use a token with the 'graphql:adhoc' scope"
        )


@dataclass(frozen=True)
class Named:
    """A request's persisted id, if it has one, and where it was given."""

    id: str
    field: str  # as the error messages name it


def named(parameters: Mapping[str, Any]) -> Named | None:
    """The id a request (an HTTP body or query string, a WebSocket payload) names.

    Raises InvalidInput for an id of the wrong shape."""
    extensions = parameters.get("extensions")
    persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
    if persisted is not None:
        field = "extensions.persistedQuery"
        if not isinstance(persisted, dict):
            raise InvalidInput(field, "must be an object {version: 1, sha256Hash}")
        if persisted.get("version", 1) != 1:
            raise InvalidInput(f"{field}.version", "must be 1 (the only version there is)")
        sha256 = persisted.get("sha256Hash")
        if not isinstance(sha256, str) or not _SHA256.match(sha256.lower()):
            raise InvalidInput(f"{field}.sha256Hash", "must be 64 hex digits (SHA-256)")
        return Named(sha256.lower(), f"{field}.sha256Hash")
    for field in ("documentId", "doc_id"):
        value = parameters.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise InvalidInput(field, "must be a non-empty string")
        return Named(value, field)
    return None


def sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def load_manifest(path: str) -> dict[str, str]:
    """A manifest `{id: document}` (codegen's persisted-documents.json, relay's
    persisted_queries.json); SettingsError saying what is wrong with it."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"TRUSTED_DOCUMENTS: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SettingsError(f"TRUSTED_DOCUMENTS: {path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in manifest.items()
    ):
        raise SettingsError(
            f"TRUSTED_DOCUMENTS: {path} must be a JSON object of id -> document text"
        )
    return {_PREFIX.sub("", key): value for key, value in manifest.items()}


class PersistedDocuments:
    """The manifest's documents and the APQ store, looked up the same way by every transport."""

    def __init__(self, settings: Settings) -> None:
        self.manifest: dict[str, str] = (
            load_manifest(settings.trusted_documents) if settings.trusted_documents else {}
        )
        self.trusted_only = bool(settings.trusted_documents)
        self.listed = frozenset(self.manifest.values())
        self.adhoc_scope = settings.trusted_documents_adhoc == "scope"
        self.kept: LRU[str, str] | None = (
            LRU(settings.persisted_queries_kept) if settings.persisted_queries_kept else None
        )

    def may_send_adhoc(self, caller: Caller | None) -> bool:
        if not self.trusted_only:
            return True
        return self.adhoc_scope and caller is not None and ADHOC in caller.scopes

    def resolve_parameters(
        self, parameters: Mapping[str, Any], caller: Caller | None
    ) -> str | None:
        """`resolve` for a request's parameters (a WebSocket operation's payload)."""
        query = parameters.get("query")
        return self.resolve(query if isinstance(query, str) else None, named(parameters), caller)

    def resolve(self, query: str | None, name: Named | None, caller: Caller | None) -> str | None:
        """The document a request runs: the one it sent, or the one its id names.

        None when it has neither (the caller's own "query is required" applies).
        Raises PersistedQueryNotFound, PersistedQueryNotSupported, NotTrusted or
        InvalidInput (an id that does not match the document sent with it).
        """
        if name is None:
            if query is None or not self.trusted_only:
                return query
            if query in self.listed or self.may_send_adhoc(caller):
                return query
            raise NotTrusted
        key = _PREFIX.sub("", name.id)
        if query is not None:
            return self._register(key, name, query, caller)
        listed = self.manifest.get(key)
        if listed is not None:
            return listed
        if self.kept is None and not self.trusted_only:
            raise PersistedQueryNotSupported
        kept = self.kept.use(key) if self.kept is not None else None
        if kept is not None and self.may_send_adhoc(caller):
            return kept
        raise PersistedQueryNotFound

    def _register(self, key: str, name: Named, query: str, caller: Caller | None) -> str:
        listed = self.manifest.get(key)
        if listed is not None:
            if listed != query:
                raise InvalidInput(name.field, "names a listed document other than the one sent")
            return query
        if sha256(query) != key:
            raise InvalidInput(
                name.field, "does not match the document sent (its SHA-256 hash, hex)"
            )
        if self.trusted_only and not self.may_send_adhoc(caller):
            raise NotTrusted
        if self.kept is not None and len(query) <= KEPT_CHARS:
            self.kept.put(key, query)
        return query


__all__ = [
    "OPERATION_NOT_TRUSTED",
    "PERSISTED_QUERY_NOT_FOUND",
    "PERSISTED_QUERY_NOT_SUPPORTED",
    "NotTrusted",
    "PersistedDocuments",
    "PersistedQueryNotFound",
    "PersistedQueryNotSupported",
    "load_manifest",
    "named",
]
