"""One TLS context per process, shared by every HTTP client apexcal makes.

Building an ``ssl.SSLContext`` loads the whole CA bundle: about 19 ms of
CPU, which a plain ``httpx.Client()`` pays even for ``http://`` URLs.  Every
sync job makes a fresh API client and a fresh CalDAV session, so without
sharing, a no-change cycle spent most of its CPU there (bench/README.md,
"scale").  A context is safe to share between clients and threads; it
verifies certificates and host names exactly as httpx's default does, and
reads the trust settings (``SSL_CERT_FILE``, ``SSL_CERT_DIR``) once, at
first use.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's TLS context for outgoing HTTPS (httpx's default settings)."""
    return httpx.create_ssl_context()
