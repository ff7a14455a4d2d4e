"""mitmproxy's CA certificate: where it lives, and making it before a bot needs it.

A client of pseudowa's HTTP(S) proxy listener (`record`, `replay --proxy-port`) must
trust this certificate; mitmproxy creates it in its confdir on first start.

mitmproxy is imported inside the function that needs it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pseudowa.proxy.errors import UserError

DEFAULT_CONFDIR = "~/.mitmproxy"
CA_CERT_NAME = "mitmproxy-ca-cert.pem"  # written by mitmproxy into its confdir on first start


def ca_cert_path(confdir: str | None) -> Path:
    """Where mitmproxy keeps the CA certificate a proxy client must trust."""
    return Path(os.path.expanduser(confdir or DEFAULT_CONFDIR)).absolute() / CA_CERT_NAME


def ensure_ca(confdir: str | None) -> Path:
    """mitmproxy's CA certificate, created as mitmproxy does on its first start if missing.

    A bot reads its trust store (SSL_CERT_FILE) when it starts, which in a replay is
    before pseudowa's proxy runs: on a fresh machine the CA must be made first.
    """
    from mitmproxy import certs
    from mitmproxy.options import CONF_BASENAME
    from mitmproxy.options import Options

    path = ca_cert_path(confdir)
    if not path.is_file():
        try:
            certs.CertStore.from_store(path.parent, CONF_BASENAME, Options().key_size)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot create mitmproxy's CA in {path.parent}: {_why(e)}") from e
    return path


def _why(error: BaseException) -> str:
    # The first line only: the message is printed as one line. (runner.one_line is the
    # same rule; runner.py imports this module, so this one cannot import it back.)
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
