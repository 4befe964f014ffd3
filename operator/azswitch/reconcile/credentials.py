"""Cloud credentials from the resource's Secret, cached briefly, and checked before they reach a header.

A missing Secret, a missing key, or a value that cannot go into an HTTP header (a pasted newline) is not an
exception: it is a string that says what to fix, which the reconciler reports as ``CredentialsNotFound``.
Secret values never reach logs, events or status (``Credentials`` hides them from ``repr``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from azswitch.kube import KubeAPI
from azswitch.reconcile.context import Credentials


class CredentialStore:
    def __init__(self, kube: KubeAPI, ttl: float, clock: Callable[[], datetime]) -> None:
        self.kube = kube
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[datetime, Credentials | str]] = {}

    async def read(self, namespace: str, secret_name: str) -> Credentials | str:
        """Credentials from the Secret, cached briefly; a string explains what is missing."""
        key = (namespace, secret_name)
        cached = self._cache.get(key)
        if cached and (self.clock() - cached[0]).total_seconds() < self.ttl:
            return cached[1]
        data = await self.kube.read_secret(namespace, secret_name)
        result: Credentials | str
        if data is None:
            result = (
                f"Secret {namespace}/{secret_name} (spec.cloud.credentialsSecretRef.name) does not exist; "
                "fix: create it with keys accessKey and secretKey"
            )
        else:
            missing = [k for k in ("accessKey", "secretKey") if not data.get(k)]
            # A key that cannot go into an HTTP header is as good as missing (and must not crash signing).
            unusable = [
                k
                for k in ("accessKey", "secretKey", "securityToken")
                if data.get(k) and not (data[k].isascii() and data[k].isprintable() and " " not in data[k])
            ]
            if missing:
                result = (
                    f"Secret {namespace}/{secret_name} lacks key(s) {', '.join(missing)}; "
                    "fix: add them (optional: securityToken for temporary credentials)"
                )
            elif unusable:
                result = (
                    f"Secret {namespace}/{secret_name}: key(s) {', '.join(unusable)} hold characters other than "
                    "printable ASCII; fix: copy the values again from the cloud console (no spaces or newlines)"
                )
            else:
                result = Credentials(data["accessKey"], data["secretKey"], data.get("securityToken") or None)
        self._cache[key] = (self.clock(), result)
        return result

    def invalidate(self, namespace: str, secret_name: str | None = None) -> None:
        for key in list(self._cache):
            if key[0] == namespace and (secret_name is None or key[1] == secret_name):
                del self._cache[key]
