"""App-only tokens for Microsoft Graph through MSAL (client credentials).

One ``TokenProvider`` per process serves every port that talks to Graph:
MSAL keeps the token in its in-memory cache and asks the token endpoint
again shortly before it expires (about once an hour), never per request.
``invalidate`` drops the cached token after Graph refused it (HTTP 401), so
the next ``token()`` fetches a new one.

The credential is a certificate (``certificate_file``: PEM holding the
unencrypted private key and the certificate; the SHA-1 thumbprint Entra ID
shows is computed here) or a client secret read from the environment,
never from the TOML. The token endpoint's AADSTS error codes become one
sentence naming the fix.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import requests

from scheduler.config import GraphConfig
from scheduler.errors import ConfigError
from scheduler.graph.http import VerifyingSession, check_url, transport_error
from scheduler.ports import PermanentError, TransientError

# AADSTS codes an administrator can act on: the fix, in words.
_FIXES: dict[int, str] = {
    90002: "the tenant {tenant} does not exist: set graph.tenant_id to the Directory (tenant) ID of the "
           "municipality's Entra ID",
    900023: "graph.tenant_id {tenant} is not a tenant ID or domain: copy the Directory (tenant) ID from Entra ID",
    700016: "the application {client} is not registered in tenant {tenant}: check graph.client_id (the "
            "Application (client) ID) and graph.tenant_id",
    7000215: "the client secret is wrong: create a new secret under Certificates & secrets of the app "
             "registration and put it in the variable {secret_env}",
    7000222: "the client secret has expired: create a new one under Certificates & secrets of the app "
             "registration and put it in the variable {secret_env}",
    700027: "Entra ID does not know the certificate in {cert}: upload its public part under Certificates & "
            "secrets of the app registration",
    700024: "the certificate assertion was refused as outside its valid time: set this machine's clock right (NTP)",
    7000218: "no credential was sent: set graph.certificate_file or the variable {secret_env}",
    500011: "Entra ID knows no resource for {scope}: graph.endpoint must be a Microsoft Graph endpoint such "
            "as https://graph.microsoft.com/v1.0",
    65001: "admin consent is missing: an administrator must grant admin consent for the app's application "
           "permissions in Entra ID (API permissions, Grant admin consent)",
    7000112: "the application {client} is disabled in tenant {tenant}: enable its enterprise application",
}


class TokenProvider:
    """Bearer tokens for ``<endpoint origin>/.default``; thread-safe."""

    def __init__(self, config: GraphConfig, *, environ: Mapping[str, str] = os.environ,
                 timeout: float = 30) -> None:
        self.config = config
        authority = check_url(config.authority, "graph.authority")
        if not config.tenant_id.strip():
            raise ConfigError("graph.tenant_id is not set; give the Directory (tenant) ID from Entra ID.")
        if not config.client_id.strip():
            raise ConfigError("graph.client_id is not set; give the Application (client) ID of the app registration.")
        endpoint = urlsplit(check_url(config.endpoint, "graph.endpoint"))
        self.authority = f"{authority.rstrip('/')}/{config.tenant_id.strip()}"
        self.scope = f"{endpoint.scheme}://{endpoint.netloc}/.default"
        self._credential = _credential(config, environ)
        self._session = VerifyingSession(config.ca_file, timeout)
        self._app = None
        self._lock = threading.Lock()
        self.requests_made = 0  # token endpoint round trips, for tests and benchmarks

    def token(self) -> str:
        """A valid access token, from MSAL's cache when it has one."""
        with self._lock:
            try:
                result = self._application().acquire_token_for_client(scopes=[self.scope])
            except requests.exceptions.RequestException as exc:
                raise transport_error(exc, "sign-in", self.config.authority) from None
        if "access_token" in result:
            return result["access_token"]
        raise self._error(result)

    def invalidate(self) -> None:
        """Forget the cached token: Graph refused it (expired or revoked)."""
        with self._lock:
            if self._app is not None:
                self._app.remove_tokens_for_client()

    def close(self) -> None:
        self._session.close()

    def _application(self):
        """The one MSAL application, made on first use (MSAL reads the
        authority's OpenID configuration when it is made)."""
        if self._app is None:
            import msal

            self._session.on_send = self._count
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.config.client_id.strip(), client_credential=self._credential, authority=self.authority,
                    http_client=self._session, instance_discovery=False,
                    token_cache=msal.TokenCache())
            except ValueError as exc:
                raise self._discovery_error(exc) from None
        return self._app

    def _count(self) -> None:
        self.requests_made += 1

    def _discovery_error(self, exc: ValueError) -> Exception:
        text = str(exc)
        if "90002" in text or "HTTP status: 400" in text:
            return ConfigError("Graph sign-in failed: " + self._fix(90002) + ".")
        return ConfigError(f"Graph sign-in failed: the OpenID configuration of {self.authority} could not be "
                           "read; check graph.authority and graph.tenant_id.")

    def _error(self, result: dict) -> Exception:
        codes = [c for c in result.get("error_codes", []) if isinstance(c, int)]
        for code in codes:
            if code in _FIXES:
                return PermanentError(f"Graph sign-in failed (AADSTS{code}): {self._fix(code)}.")
        error = str(result.get("error", "unknown_error"))
        if error in ("temporarily_unavailable", "server_error") or result.get("status") in (429, 500, 503, 504):
            return TransientError(f"Graph sign-in failed: the token endpoint answered {error}; try again later.")
        code = f"AADSTS{codes[0]}" if codes else error
        return PermanentError(f"Graph sign-in failed ({code}); look the code up in Entra ID's sign-in logs "
                              "for the app registration.")

    def _fix(self, code: int) -> str:
        return _FIXES[code].format(tenant=self.config.tenant_id, client=self.config.client_id,
                                   secret_env=self.config.client_secret_env, cert=self.config.certificate_file,
                                   scope=self.scope)


def _credential(config: GraphConfig, environ: Mapping[str, str]):
    """MSAL's client_credential: the certificate when configured, else the secret."""
    if config.certificate_file:
        return certificate_credential(Path(config.certificate_file))
    secret = environ.get(config.client_secret_env, "")
    if not secret:
        raise ConfigError(f"graph: neither graph.certificate_file nor the variable {config.client_secret_env} "
                          "is set; give the app's certificate (recommended) or its client secret.")
    return secret


def certificate_credential(path: Path) -> dict:
    """``{"private_key", "thumbprint"}`` from one PEM file with key and certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"graph.certificate_file {path}: cannot be read ({type(exc).__name__}).") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"graph.certificate_file {path}: holds no unencrypted PEM private key; "
                          "convert it with: openssl pkcs12 -in app.pfx -out app.pem -nodes") from None
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"graph.certificate_file {path}: holds no PEM certificate beside the key; "
                          "append the certificate (-----BEGIN CERTIFICATE-----) to the file.") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"graph.certificate_file {path}: the key must be RSA (Entra ID signs with RS256).")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"private_key": pem, "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper()}  # noqa: S303
