"""mitmproxy's CA: where it is, made once before a bot needs it, one line when it cannot be."""

from __future__ import annotations

from pathlib import Path

import pytest

from pseudowa.proxy.errors import UserError
from pseudowa.proxy.mitm.ca import CA_CERT_NAME
from pseudowa.proxy.mitm.ca import DEFAULT_CONFDIR
from pseudowa.proxy.mitm.ca import ca_cert_path
from pseudowa.proxy.mitm.ca import ensure_ca


def test_ca_cert_path_defaults_to_mitmproxys_home() -> None:
    assert DEFAULT_CONFDIR == "~/.mitmproxy"
    assert ca_cert_path(None) == Path.home() / ".mitmproxy" / CA_CERT_NAME
    assert ca_cert_path(None).name == "mitmproxy-ca-cert.pem"


def test_ca_cert_path_is_absolute_and_expands_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert ca_cert_path("conf") == tmp_path / "conf" / CA_CERT_NAME
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ca_cert_path("~/mitm") == tmp_path / "home" / "mitm" / CA_CERT_NAME


def test_ensure_ca_creates_it_in_the_confdir_once(tmp_path: Path) -> None:
    confdir = tmp_path / "fresh" / "conf"  # not there yet: made like mitmproxy makes it
    ca = ensure_ca(str(confdir))
    assert ca == confdir / CA_CERT_NAME == ca_cert_path(str(confdir))
    first = ca.read_bytes()
    assert first.startswith(b"-----BEGIN CERTIFICATE-----")
    # mitmproxy's own files are there too, so its next start uses this CA.
    assert (confdir / "mitmproxy-ca.pem").is_file()
    assert ensure_ca(str(confdir)).read_bytes() == first  # kept, not remade


def test_ensure_ca_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    with pytest.raises(UserError) as raised:
        ensure_ca(str(blocker / "conf"))
    message = str(raised.value)
    assert message.startswith(f"cannot create mitmproxy's CA in {blocker / 'conf'}: ")
    assert "Not a directory" in message and "\n" not in message
