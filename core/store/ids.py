"""Timestamps and the ids of versions and recorded runs."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def content_digest(key: Any) -> str:
    """A short digest of a JSON-able ``key`` (config, data versions): what a version was built from."""
    import hashlib

    return hashlib.blake2b(json.dumps(key, sort_keys=True, default=str).encode(), digest_size=5).hexdigest()


def build_id() -> str:
    """A part of a version id that no other build shares: the UTC time to the second and a random suffix."""
    return f"{utcnow():%y%m%d%H%M%S}{uuid.uuid4().hex[:4]}"


def record_id(prefix: str, created: datetime) -> str:
    """The id of a recorded run (a prompt, an evaluation, an analysis): ``PREFIX_YYYYMMDD_HHMMSS_RANDOM``."""
    return f"{prefix}_{created:%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:6]}"
