"""The process-wide TLS context every HTTP client shares."""

from __future__ import annotations

import ssl

from apexcal.tls import tls_context


class TestSharedTlsContext:
    def test_one_context_that_still_verifies_certificates_and_host_names(self) -> None:
        """Every call gives the same context, verifying certificates and host names like httpx's default."""
        context = tls_context()
        assert tls_context() is context
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        assert context.get_ca_certs() or context.cert_store_stats()["x509_ca"] > 0
