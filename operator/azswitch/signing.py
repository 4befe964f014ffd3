"""SDK-HMAC-SHA256, the cloud's AK/SK request signature, as pure functions (cloud-api.md §5.2).

Both sides need it: the cloud client signs with it (``azswitch.cloud.auth.AkSkAuth``) and the simulator
verifies with it. It is the only code the two share, so it is kept free of I/O and of any HTTP library:
everything is strings and bytes, and every step of the algorithm is a function of its own so that tests can
check each against the published vectors.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_HEADER = "x-sdk-date"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
CONTENT_SHA256_HEADER = "x-sdk-content-sha256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: The gateway rejects a request whose X-Sdk-Date is further than this from its own clock.
MAX_CLOCK_SKEW_SECONDS = 15 * 60


def _encode(text: str) -> str:
    # RFC 3986: unreserved characters stay, every other UTF-8 byte becomes %XY (upper-case hex).
    return quote(text, safe="-_.~")


def canonical_uri(raw_path: str) -> str:
    """Percent-encode each path segment afresh and always end with ``/``.

    ``raw_path`` is the path as sent on the wire (possibly already percent-encoded): each segment is decoded
    first so that ``%e4`` and ``%E4`` and a raw non-ASCII character all canonicalise the same way.
    """
    segments = [_encode(unquote(segment)) for segment in raw_path.split("/")]
    uri = "/".join(segments)
    if not uri.startswith("/"):
        uri = "/" + uri
    if not uri.endswith("/"):
        uri += "/"
    return uri


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Decode a raw query string into (name, value) pairs, keeping blanks and repeats."""
    return parse_qsl(raw_query, keep_blank_values=True)


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Sort by name then value on the raw text (as the official SDKs do), then encode and join as ``k=v``."""
    return "&".join(f"{_encode(name)}={_encode(value)}" for name, value in sorted(pairs))


def signed_header_names(names: Iterable[str]) -> list[str]:
    """Lower-case and sort the header names that take part in the signature."""
    return sorted({name.lower() for name in names})


def canonical_headers(headers: Mapping[str, str], signed: Iterable[str]) -> str:
    """``name:trimmed value\\n`` for each signed header, in sorted order.

    ``headers`` must be keyed by lower-case names.
    """
    return "".join(f"{name}:{headers[name].strip()}\n" for name in signed_header_names(signed))


def payload_hash(body: bytes, headers: Mapping[str, str] | None = None) -> str:
    """Hex SHA-256 of the exact body bytes, or the literal the client asked for instead."""
    if headers is not None and headers.get(CONTENT_SHA256_HEADER) == UNSIGNED_PAYLOAD:
        return UNSIGNED_PAYLOAD
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed: Iterable[str],
    body: bytes,
) -> str:
    """The six-part canonical request. ``headers`` keyed by lower-case names."""
    names = signed_header_names(signed)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(query_pairs(raw_query)),
            canonical_headers(headers, names),
            ";".join(names),
            payload_hash(body, headers),
        ]
    )


def string_to_sign(sdk_date: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(secret_key: str, to_sign: str) -> str:
    """HMAC-SHA256 keyed directly by the SK: unlike AWS SigV4 there is no key derivation."""
    return hmac.new(secret_key.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(access_key: str, signed: Iterable[str], sig: str) -> str:
    names = ";".join(signed_header_names(signed))
    return f"{ALGORITHM} Access={access_key}, SignedHeaders={names}, Signature={sig}"


def sign_request(
    access_key: str,
    secret_key: str,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed: Iterable[str],
    body: bytes,
) -> str:
    """Return the ``Authorization`` header value for a request. ``headers`` keyed by lower-case names and
    must contain ``x-sdk-date``."""
    names = signed_header_names(signed)
    canonical = canonical_request(method, raw_path, raw_query, headers, names, body)
    sig = signature(secret_key, string_to_sign(headers[SDK_DATE_HEADER], canonical))
    return authorization(access_key, names, sig)


class MalformedAuthorization(ValueError):
    """The Authorization header is not ``SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…``."""


def parse_authorization(value: str) -> tuple[str, list[str], str]:
    """Split an Authorization header into (access key, signed header names, signature)."""
    prefix = ALGORITHM + " "
    if not value.startswith(prefix):
        raise MalformedAuthorization(f"authorization must start with {ALGORITHM!r}")
    fields: dict[str, str] = {}
    for part in value[len(prefix) :].split(", "):
        key, sep, val = part.partition("=")
        if not sep or not val:
            raise MalformedAuthorization(f"malformed authorization field {key!r}")
        fields[key] = val
    missing = {"Access", "SignedHeaders", "Signature"} - fields.keys()
    if missing:
        raise MalformedAuthorization(f"authorization lacks {', '.join(sorted(missing))}")
    return fields["Access"], fields["SignedHeaders"].split(";"), fields["Signature"]
