"""The one piece of the control-plane build that depends on the machine's apt configuration, checked
without building: which entries a private deb-src list is derived from (azswitch.dev.controlplane).

Moved here from tests/e2e/test_controlplane.py: it is pure and needs no control plane.
"""

from __future__ import annotations

import pytest

from azswitch.dev import controlplane as cp

_DEB822 = """\
Types: deb
# a comment
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main

Types: deb
URIs: http://mirror.example/debian
Suites: bookworm
Components: main
Enabled: no
"""


@pytest.mark.parametrize(
    ("files", "expected_list", "expected_sources"),
    [
        pytest.param(
            {"debian.sources": _DEB822},
            "",
            "Types: deb deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg",
            id="deb822-keeps-the-release-drops-third-party-and-disabled",
        ),
        pytest.param(
            {
                "sources.list": "deb [signed-by=/k.gpg arch=amd64] "
                "http://deb.debian.org/debian bookworm main contrib\n"
                "# deb http://commented.example/debian bookworm main\n"
                "deb-src http://deb.debian.org/debian bookworm main\n",
                "google.list": "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n",
            },
            "deb [signed-by=/k.gpg arch=amd64] http://deb.debian.org/debian bookworm main contrib\n"
            "deb-src [signed-by=/k.gpg arch=amd64] http://deb.debian.org/debian bookworm main contrib",
            "",
            id="one-line-keeps-options-skips-comments-and-other-suites",
        ),
        pytest.param(
            {"security.list": "deb http://security.debian.org/debian-security bookworm/updates main\n"},
            "deb http://security.debian.org/debian-security bookworm/updates main\n"
            "deb-src http://security.debian.org/debian-security bookworm/updates main",
            "",
            id="old-style-security-suite",
        ),
    ],
)
def test_derive_apt_sources(files: dict[str, str], expected_list: str, expected_sources: str) -> None:
    one_line, deb822 = cp.derive_apt_sources(files, "bookworm")
    assert (one_line.strip(), deb822.strip()) == (expected_list, expected_sources)
