"""The operator and the router log in from the in-cluster folder the node agent names.

On a real cluster the token and CA are at /var/run/secrets/kubernetes.io/serviceaccount;
the local node agent runs pods as processes, writes them under the pod's folder and
names it in KUBESOAR_SERVICE_ACCOUNT_DIR. Both components then use the Kubernetes
client's own in-cluster loader on that folder (test_chart_install_cluster.py shows
the chart's pods logging in this way on the local cluster).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import certifi
import pytest
from kubernetes.config import ConfigException
from kubesoar_operator import login
from kubesoar_router.kubeapi import KubeApi


@pytest.fixture
def account_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text("pod-bound-token")  # as the kubelet writes it
    shutil.copy(certifi.where(), folder / "ca.crt")  # any PEM bundle will do
    (folder / "namespace").write_text("kubesoar-system")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setenv("KUBESOAR_SERVICE_ACCOUNT_DIR", str(folder))
    # Nothing to fall back to: the folder is the only source of credentials.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    return folder


def test_operator_reads_the_named_folder(account_dir: Path):
    configuration = login.load_configuration(None)
    assert configuration.host == "https://127.0.0.1:6443"
    assert configuration.ssl_ca_cert == str(account_dir / "ca.crt")
    info = login.connection_info(configuration)
    assert info.token == "pod-bound-token"


def test_router_reads_the_named_folder(account_dir: Path):
    api = KubeApi.from_config(None)
    assert api._host == "https://127.0.0.1:6443"
    scheme, token = api._headers["Authorization"].split(" ")
    assert (scheme.lower(), token) == ("bearer", "pod-bound-token")


def test_without_a_token_in_the_folder_the_router_says_so(account_dir: Path):
    (account_dir / "token").unlink()
    with pytest.raises(ConfigException, match="token file does not exist"):
        KubeApi.from_config(None)
