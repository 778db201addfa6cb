"""oauth2-proxy: the stack's web UIs behind the organisation's Okta SSO (Kubernetes only)."""

from __future__ import annotations

from services.components.base import (
    CHOICE,
    NOT_LOCAL,
    STR,
    Capability,
    Component,
    HealthCheck,
    KubeWorkload,
    Parameter,
    Target,
    resources,
    secret_env,
)
from services.components.jupyterlab import PORT as JUPYTER_PORT
from services.components.jupyterlab import JupyterLab

PORT = 4180


class OAuth2Proxy(Component):
    code = "oauth2-proxy"
    name = "SSO proxy (Okta)"
    capabilities = (Capability.AUTHENTICATION,)
    default_version = "7.9"
    description = "Puts the stack's web UIs behind the organisation's Okta SSO."
    parameters = (
        Parameter("provider", CHOICE, "okta", "Identity provider.", ("okta", "oidc")),
        Parameter("issuer_url", STR, "", "OIDC issuer, e.g. https://org.okta.com/..."),
        *resources(cpu=1, memory_gb=1),
    )
    ports = (PORT,)
    image = "quay.io/oauth2-proxy/oauth2-proxy:v{version}.0"
    local_unavailable = (
        f"SSO proxy: {NOT_LOCAL} (local services listen on 127.0.0.1 only and are reached "
        "through the portal host)."
    )
    secret_key = "cookie-secret"
    health = HealthCheck("/ping", PORT)

    def kubernetes(self, target: Target) -> KubeWorkload:
        issuer = target.parameters.get("issuer_url") or "https://example.okta.com"
        container = {
            "args": [
                f"--http-address=0.0.0.0:{PORT}",
                "--provider=oidc",  # Okta is an OpenID Connect provider
                f"--oidc-issuer-url={issuer}",
                f"--upstream=http://{target.peer(JupyterLab)}:{JUPYTER_PORT}",
                "--email-domain=*",
            ],
            "env": [
                secret_env(target, "OAUTH2_PROXY_COOKIE_SECRET", self.secret_key),
                secret_env(target, "OAUTH2_PROXY_CLIENT_ID", "client-id", optional=True),
            ],
            "ports": [{"name": "http", "containerPort": PORT}],
        }
        return KubeWorkload(container)
