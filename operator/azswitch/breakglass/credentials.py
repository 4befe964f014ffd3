"""Cloud credentials for a break-glass run: a ``--credentials`` file, the Secret each manifest names (when the
cluster is reachable), or the environment.

A ``--credentials`` file is either the Secret's own YAML (``data`` base64-encoded, or ``stringData``) or an
env-style file (``AZSWITCH_ACCESS_KEY=…`` / ``accessKey=…`` lines, ``#`` comments, optional quotes). The
environment is ``AZSWITCH_ACCESS_KEY``, ``AZSWITCH_SECRET_KEY`` and optionally ``AZSWITCH_SECURITY_TOKEN``.
Values are never printed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path

import yaml

from azswitch.breakglass.manifests import InputError

#: The Secret's keys, and the environment/env-file names that mean the same.
KEYS = ("accessKey", "secretKey", "securityToken")
ENV_NAMES = {
    "AZSWITCH_ACCESS_KEY": "accessKey",
    "AZSWITCH_SECRET_KEY": "secretKey",
    "AZSWITCH_SECURITY_TOKEN": "securityToken",
}
_ALIASES = {**ENV_NAMES, **{k: k for k in KEYS}, **{k.lower(): k for k in KEYS}}

FIX = (
    "fix: pass --credentials FILE (the Secret's YAML, or AZSWITCH_ACCESS_KEY=… and AZSWITCH_SECRET_KEY=… "
    "lines), or set AZSWITCH_ACCESS_KEY and AZSWITCH_SECRET_KEY"
)


def from_file(path: str) -> dict[str, str]:
    """The credentials in ``path``; ``InputError`` names the file and what is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; fix: check the path given to --credentials") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{path}: cannot read it ({exc}); fix: check the path given to --credentials"
        ) from None
    try:
        document: object = yaml.safe_load(text)
    except yaml.YAMLError:
        document = None  # not YAML: an env-style file
    if isinstance(document, Mapping) and ("data" in document or "stringData" in document):
        values = _from_secret(document, path)
    else:
        values = _from_env_file(text, path)
    return checked(values, path)


def _from_secret(secret: Mapping[str, object], path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    data = secret.get("data")
    if isinstance(data, Mapping):
        for key, raw in data.items():
            if key not in KEYS or raw is None:
                continue
            try:
                values[key] = base64.b64decode(str(raw), validate=True).decode("utf-8").strip()
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raise InputError(
                    f"{path}: data.{key} is not base64; fix: encode it (base64 -w0), or put the plain value "
                    "under stringData"
                ) from None
    string_data = secret.get("stringData")
    if isinstance(string_data, Mapping):
        for key, raw in string_data.items():
            if key in KEYS and raw is not None:
                values[key] = str(raw).strip()
    return values


def _from_env_file(text: str, path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.removeprefix("export ").partition("=")
        if not sep:
            raise InputError(
                f"{path}: line {number} is not NAME=VALUE; fix: write e.g. AZSWITCH_ACCESS_KEY=AK…, or give "
                "the Secret's YAML"
            )
        key = _ALIASES.get(name.strip())
        if key is None:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def from_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """Credentials from ``AZSWITCH_ACCESS_KEY``/``AZSWITCH_SECRET_KEY``; None when neither is set."""
    values = {key: environ[name].strip() for name, key in ENV_NAMES.items() if environ.get(name)}
    if not values:
        return None
    return checked(values, "the environment (AZSWITCH_ACCESS_KEY/AZSWITCH_SECRET_KEY)")


def checked(values: Mapping[str, str], where: str) -> dict[str, str]:
    """Both keys present and usable in an HTTP header (the check the operator's CredentialStore makes)."""
    missing = [k for k in ("accessKey", "secretKey") if not values.get(k)]
    if missing:
        raise InputError(f"{where}: no {' or '.join(missing)}; {FIX}")
    unusable = [k for k, v in values.items() if v and not (v.isascii() and v.isprintable() and " " not in v)]
    if unusable:
        raise InputError(
            f"{where}: {', '.join(unusable)} hold characters other than printable ASCII; fix: copy the values "
            "again (no spaces or newlines)"
        )
    return {k: v for k, v in values.items() if v}
