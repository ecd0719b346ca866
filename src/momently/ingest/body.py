"""Reading request bodies safely: size limits before and after gzip, and auth.

>>> import gzip
>>> inflate(gzip.compress(b'{"a": 1}'), limit=100)
b'{"a": 1}'
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import AsyncIterator

from momently.errors import BadEncoding, PayloadTooLarge, UnsupportedMediaType

GZIP_MAGIC = b"\x1f\x8b"
ACCEPTED_TYPES = frozenset({"application/json", "text/plain", ""})


def check_content_type(header: str | None) -> None:
    """JSON bodies, or text/plain as the mobile and beacon clients send them."""
    media = (header or "").split(";", 1)[0].strip().lower()
    if media not in ACCEPTED_TYPES:
        raise UnsupportedMediaType(
            f"content type {media!r} is not accepted; send application/json or text/plain",
            "Content-Type",
        )


async def read_limited(chunks: AsyncIterator[bytes], limit: int, declared: str | None) -> bytes:
    """The whole body, refusing early when it is over ``limit`` bytes on the wire."""
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadEncoding("Content-Length is not a number", "Content-Length") from None
        if length > limit:
            raise PayloadTooLarge(f"body of {length} bytes is over the {limit} byte limit")
    parts = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the {limit} byte limit")
        parts.append(chunk)
    return b"".join(parts)


def inflate(data: bytes, limit: int) -> bytes:
    """Un-gzip ``data``, stopping at ``limit`` bytes out so a gzip bomb cannot exhaust memory."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as error:
        raise BadEncoding(f"body is not valid gzip: {error}", "Content-Encoding") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"gzip body inflates past the {limit} byte limit", "Content-Encoding")
    if not inflater.eof:
        raise BadEncoding("gzip body is truncated", "Content-Encoding")
    return out


def decode_body(data: bytes, encoding: str | None, limit: int) -> bytes:
    """The body's JSON bytes: inflated when gzip (by header, or by magic for mobile clients)."""
    coding = (encoding or "").strip().lower()
    if coding not in ("", "identity", "gzip"):
        raise BadEncoding(
            f"content encoding {coding!r} is not supported; use gzip", "Content-Encoding"
        )
    if coding == "gzip" or data[:2] == GZIP_MAGIC:
        data = inflate(data, limit)
    elif len(data) > limit:
        raise PayloadTooLarge(f"body of {len(data)} bytes is over the {limit} byte limit")
    return data


def basic_user(header: str | None) -> str | None:
    """The user part of an HTTP Basic ``Authorization`` header: Segment's write key."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = decoded.partition(":")[0]
    return user or None
