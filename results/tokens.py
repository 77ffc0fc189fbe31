"""API tokens: created once (the plain token is shown a single time), stored as SHA-256
hashes, checked by hash lookup plus a constant-time comparison, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from results.orm import ApiTokenRow
from results.orm import utcnow
from results.records import ApiTokenRecord

TOKEN_PREFIX = "pt_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _record(row: ApiTokenRow) -> ApiTokenRecord:
    return ApiTokenRecord(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked=row.revoked,
    )


class TokenRepository:
    """Flushes only; the caller's session scope commits."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, name: str) -> tuple[str, ApiTokenRecord]:
        """A new token: returns the plain token (shown once) and its stored record."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ApiTokenRow(name=name, token_hash=hash_token(token), revoked=False)
        self.session.add(row)
        self.session.flush()
        return token, _record(row)

    def verify(self, token: str) -> bool:
        """True for a known, unrevoked token; records its use."""
        digest = hash_token(token)
        row = self.session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_hash == digest))
        if row is None or row.revoked or not hmac.compare_digest(row.token_hash, digest):
            return False
        row.last_used_at = utcnow()
        self.session.flush()
        return True

    def list(self) -> list[ApiTokenRecord]:
        rows = self.session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.id))
        return [_record(r) for r in rows]

    def revoke(self, token_id: int) -> bool:
        result = self.session.execute(
            update(ApiTokenRow).where(ApiTokenRow.id == token_id).values(revoked=True)
        )
        return bool(getattr(result, "rowcount", 0))
