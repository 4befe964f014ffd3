"""Who may call the fake cloud: IAM password tokens and AK/SK signatures, checked like the API gateway does.

Signatures are verified with ``azswitch.signing`` — the one piece of code the simulator shares with the
client — over exactly the headers the request lists in ``SignedHeaders``. Failures are ``GatewayError``s,
rendered in the gateway's ``{"error_code", "error_msg", "request_id"}`` shape; IAM's own endpoint answers with
``IamError``s in Keystone's ``{"error": {"code": <int>, "message", "title"}}`` shape. The codes and messages
chosen are listed in the package docstring.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from azswitch import signing
from azswitch.dev.simulator.clock import SimClock, iam_timestamp, sdk_date
from azswitch.dev.simulator.seed import CredentialSeed, Seed, SeedError, UserSeed, derived_id

IAM_AUTH_FAILED = "APIGW.0301"  # "Incorrect IAM authentication information: …"
IAM_FORBIDDEN = "APIGW.0302"  # "The IAM user is not authorized to access the API"
TOKEN_EXPIRED = "APIGW.0307"  # "The token must be updated."
THROTTLED = "APIGW.0308"
API_NOT_FOUND = "APIGW.0101"
BAD_GATEWAY_REQUEST = "APIGW.0201"


class GatewayError(Exception):
    """An answer the API gateway gives before the request reaches the service."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class IamError(Exception):
    """An answer of ``POST /v3/auth/tokens`` other than 201."""

    TITLES: dict[int, str] = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "error": {"code": self.status, "message": self.message, "title": self.TITLES.get(self.status, "")}
        }


@dataclass
class Token:
    value: str
    user: str
    domain: str
    project_id: str | None
    issued_at: float
    expires_at: float
    revoked: bool = False


@dataclass(frozen=True)
class Principal:
    """Who made a cloud call: ``project_id`` is the token's scope, or None for AK/SK (every project)."""

    kind: Literal["token", "aksk"]
    name: str
    project_id: str | None


def _iam_failure(detail: str) -> GatewayError:
    return GatewayError(401, IAM_AUTH_FAILED, f"Incorrect IAM authentication information: {detail}")


class Identity:
    """Credentials, users and issued tokens."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.credentials: dict[str, CredentialSeed] = {}
        self.users: dict[tuple[str, str], UserSeed] = {}
        self.tokens: dict[str, Token] = {}

    def clear(self) -> None:
        self.credentials.clear()
        self.users.clear()
        self.tokens.clear()

    def load(self, seed: Seed) -> None:
        clashes = [f"credential {c.access_key}" for c in seed.credentials if c.access_key in self.credentials]
        clashes += [f"user {u.domain}/{u.name}" for u in seed.users if (u.domain, u.name) in self.users]
        if clashes:
            raise SeedError("seed conflicts with existing objects: " + ", ".join(clashes))
        for cred in seed.credentials:
            self.credentials[cred.access_key] = cred
        for user in seed.users:
            self.users[(user.domain, user.name)] = user

    def revoke(self, value: str) -> bool:
        token = self.tokens.get(value)
        if token is None or token.revoked:
            return False
        token.revoked = True
        return True

    def revoke_all(self) -> int:
        """Revoke every token; return how many were still usable."""
        now = self.clock.wall()
        live = [t for t in self.tokens.values() if not t.revoked and now < t.expires_at]
        for token in live:
            token.revoked = True
        return len(live)

    # ------------------------------------------------------------------------------------ IAM

    def issue_token(
        self,
        body: Any,
        projects: Mapping[str, str],
        lifetime: float,
        *,
        host: str,
        catalog: bool = True,
    ) -> tuple[str, dict[str, Any]]:
        """Password authentication (cloud-api.md §5.1): return the token value and the 201 body."""
        identity = _dig(body, "auth", "identity")
        methods = identity.get("methods") if isinstance(identity, dict) else None
        if not isinstance(identity, dict) or not isinstance(methods, list) or "password" not in methods:
            raise IamError(400, 'auth.identity.methods must include "password"')
        user_doc = _dig(identity, "password", "user")
        if not isinstance(user_doc, dict):
            raise IamError(400, "auth.identity.password.user is required")
        name, password = user_doc.get("name"), user_doc.get("password")
        domain_doc = user_doc.get("domain")
        if not isinstance(name, str) or not isinstance(password, str) or not isinstance(domain_doc, dict):
            raise IamError(400, "auth.identity.password.user needs name, password and domain")
        domain = self._domain_name(domain_doc) or ""
        user = self.users.get((domain, name))
        if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
            raise IamError(401, "The username or password is wrong.")

        scope = _dig(body, "auth", "scope")
        project_id: str | None = None
        scope_doc: dict[str, Any] = {}
        if isinstance(scope, dict) and isinstance(scope.get("project"), dict):
            project_id = self._project_id(scope["project"], projects)
            scope_doc["project"] = {
                "id": project_id,
                "name": projects[project_id],
                "domain": self._domain_doc(domain),
            }
        elif isinstance(scope, dict) and isinstance(scope.get("domain"), dict):
            if self._domain_name(scope["domain"]) != domain:
                raise IamError(401, "The user has no access to the requested domain.")
            scope_doc["domain"] = self._domain_doc(domain)
        elif scope is not None and not isinstance(scope, dict):
            raise IamError(400, "auth.scope must be an object")

        now = self.clock.wall()
        value = "MIIsim" + secrets.token_urlsafe(48)
        self.tokens[value] = Token(value, name, domain, project_id, issued_at=now, expires_at=now + lifetime)
        token: dict[str, Any] = {
            "methods": ["password"],
            "issued_at": iam_timestamp(now),
            "expires_at": iam_timestamp(now + lifetime),
            "user": {
                "id": derived_id("user", domain, name).replace("-", ""),
                "name": name,
                "domain": self._domain_doc(domain),
                "password_expires_at": "",
            },
            "roles": [{"id": derived_id("role", "te_admin").replace("-", ""), "name": "te_admin"}],
            **scope_doc,
        }
        if catalog and project_id is not None:
            base = f"http://{host}"
            token["catalog"] = [
                _catalog_entry("volumev2", "cinderv2", f"{base}/v2/{project_id}", projects[project_id]),
                _catalog_entry("evs", "evs", f"{base}/v2/{project_id}", projects[project_id]),
                _catalog_entry("sdrs", "sdrs", f"{base}/v1/{project_id}", projects[project_id]),
                _catalog_entry("identity", "iam", f"{base}/v3", projects[project_id]),
            ]
        elif catalog:
            token["catalog"] = []
        return value, {"token": token}

    def _domain_name(self, doc: Mapping[str, Any]) -> str | None:
        if isinstance(doc.get("name"), str):
            return str(doc["name"])
        if isinstance(doc.get("id"), str):
            for domain, _name in self.users:
                if self._domain_id(domain) == doc["id"]:
                    return domain
        return None

    @staticmethod
    def _domain_id(domain: str) -> str:
        return derived_id("domain", domain).replace("-", "")

    def _domain_doc(self, domain: str) -> dict[str, str]:
        return {"id": self._domain_id(domain), "name": domain}

    @staticmethod
    def _project_id(doc: Mapping[str, Any], projects: Mapping[str, str]) -> str:
        if isinstance(doc.get("id"), str):
            if doc["id"] in projects:
                return str(doc["id"])
            raise IamError(400, f"project {doc['id']} does not exist")
        if isinstance(doc.get("name"), str):
            for pid, pname in projects.items():
                if pname == doc["name"]:
                    return pid
            raise IamError(400, f"project {doc['name']!r} does not exist")
        raise IamError(400, "auth.scope.project needs id or name")

    # ------------------------------------------------------------------------------------ gateway

    def authenticate(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Principal:
        """AK/SK if an ``Authorization`` header is present, else ``X-Auth-Token``; raise ``GatewayError``."""
        if "authorization" in headers:
            return self._verify_signature(method, raw_path, raw_query, headers, body)
        if "x-auth-token" in headers:
            return self._verify_token(headers["x-auth-token"])
        raise _iam_failure("x-auth-token not found")

    def _verify_token(self, value: str) -> Principal:
        token = self.tokens.get(value.strip())
        if token is None:
            raise _iam_failure("decrypt token fail")
        if token.revoked or self.clock.wall() >= token.expires_at:
            raise GatewayError(401, TOKEN_EXPIRED, "The token must be updated.")
        # A domain-scoped or unscoped token is scoped to no project: "" matches none, unlike None (AK/SK).
        return Principal("token", f"{token.domain}/{token.user}", token.project_id or "")

    def _verify_signature(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Principal:
        try:
            access_key, signed, given = signing.parse_authorization(headers["authorization"])
        except signing.MalformedAuthorization as exc:
            raise _iam_failure(f"invalid Authorization header: {exc}") from None
        names = [name.strip().lower() for name in signed]
        if not all(names):
            raise _iam_failure("invalid Authorization header: empty name in SignedHeaders")
        credential = self.credentials.get(access_key)
        if credential is None:
            raise _iam_failure(f"verify aksk signature fail: access key {access_key} does not exist")
        if signing.SDK_DATE_HEADER not in names:
            raise _iam_failure("x-sdk-date must be one of the SignedHeaders")
        missing = [name for name in names if name not in headers]
        if missing:
            raise _iam_failure(f"signed header(s) missing from the request: {', '.join(missing)}")
        date_text = headers[signing.SDK_DATE_HEADER].strip()
        try:
            signed_at = datetime.strptime(date_text, signing.SDK_DATE_FORMAT).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise _iam_failure(f"x-sdk-date {date_text!r} is not YYYYMMDDTHHMMSSZ") from None
        now = self.clock.wall()
        if abs(now - signed_at) > signing.MAX_CLOCK_SKEW_SECONDS:
            raise _iam_failure(f"signature expired, signature time:{date_text},server time:{sdk_date(now)}")
        canonical = signing.canonical_request(method, raw_path, raw_query, headers, names, body)
        expected = signing.signature(credential.secret_key, signing.string_to_sign(date_text, canonical))
        if not hmac.compare_digest(expected, given.strip().lower()):
            echo = canonical.replace("\n", "|")
            raise _iam_failure(f"verify aksk signature fail, canonicalRequest:{echo}")
        if credential.security_token is not None and not hmac.compare_digest(
            headers.get("x-security-token", "").encode(), credential.security_token.encode()
        ):
            raise _iam_failure("verify security token fail")
        return Principal("aksk", access_key, None)


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _catalog_entry(kind: str, name: str, url: str, region: str) -> dict[str, Any]:
    return {
        "type": kind,
        "name": name,
        "id": derived_id("service", kind).replace("-", ""),
        "endpoints": [
            {
                "id": derived_id("endpoint", kind, region).replace("-", ""),
                "interface": "public",
                "region": region,
                "region_id": region,
                "url": url,
            }
        ],
    }
