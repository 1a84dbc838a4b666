"""Only the aggregator may speak for users: the router's API port believes X-Remote-User
only over a client certificate from the front-proxy CA with an allowed common name
(read from kube-system/extension-apiserver-authentication), and still asks RBAC."""

from __future__ import annotations

import ssl

import httpx
import pytest
from api.conftest import RunsApi

from hack.localcluster import pki

pytestmark = pytest.mark.cluster


def _client(runs_api: RunsApi, stem: str | None) -> httpx.Client:
    pki_dir = runs_api.cluster.state_dir / "pki"
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    if stem is not None:
        context.load_cert_chain(str(pki_dir / f"{stem}.crt"), str(pki_dir / f"{stem}.key"))
    return httpx.Client(
        base_url=f"https://127.0.0.1:{runs_api.api_port}", verify=context, timeout=10
    )


def _runs_path(runs_api: RunsApi) -> str:
    return f"/apis/runs.kubesoar.dev/v1alpha1/namespaces/{runs_api.seeded.tenant_a}/runs"


def test_the_front_proxy_certificate_with_a_user_is_authorised_by_rbac(runs_api: RunsApi) -> None:
    with _client(runs_api, pki.FRONT_PROXY_CLIENT) as client:
        allowed = client.get(_runs_path(runs_api), headers={"X-Remote-User": "alice"})
        assert allowed.status_code == 200 and allowed.json()["kind"] == "RunList"
        assert len(allowed.json()["items"]) >= 3
        refused = client.get(_runs_path(runs_api), headers={"X-Remote-User": "mallory"})
        assert refused.status_code == 403 and refused.json()["reason"] == "Forbidden"
        # Groups count: system:masters may do anything, so this is allowed.
        admin = client.get(
            _runs_path(runs_api),
            headers={"X-Remote-User": "mallory", "X-Remote-Group": "system:masters"},
        )
        assert admin.status_code == 200


def test_headers_without_the_front_proxy_certificate_are_not_believed(runs_api: RunsApi) -> None:
    with _client(runs_api, None) as client:
        anonymous = client.get(_runs_path(runs_api), headers={"X-Remote-User": "alice"})
    assert anonymous.status_code == 401 and anonymous.json()["reason"] == "Unauthorized"
    with _client(runs_api, pki.FRONT_PROXY_CLIENT) as client:
        nobody = client.get(_runs_path(runs_api))
    assert nobody.status_code == 401


def test_a_certificate_of_another_ca_or_name_is_refused(runs_api: RunsApi) -> None:
    # The cluster admin's certificate is real, but from the client CA: no handshake.
    with _client(runs_api, "admin") as client, pytest.raises(httpx.TransportError):
        client.get(_runs_path(runs_api), headers={"X-Remote-User": "alice"})
    # A front-proxy-CA certificate whose name the cluster does not allow to proxy.
    pki_dir = runs_api.cluster.state_dir / "pki"
    pki._signed_cert(
        pki_dir,
        "not-the-proxy",
        "/CN=not-the-proxy",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        ca=pki.FRONT_PROXY_CA,
    )
    with _client(runs_api, "not-the-proxy") as client:
        refused = client.get(_runs_path(runs_api), headers={"X-Remote-User": "alice"})
    assert refused.status_code == 401
