"""How the local node agent maps what the chart's pods say (no cluster needed).

The chart's args name in-container paths as `--flag=/path`, listen on `0.0.0.0`, and
give runtime pods the operator's Service name; the agent runs pods as processes on
loopback with no DNS, so it rewrites each (hack/localcluster/podenv.py, podnet.py).
The cluster test (test_chart_install_cluster.py) shows the whole chart running.
"""

from __future__ import annotations

import asyncio

from hack.localcluster import podnet
from hack.localcluster.podenv import PathRewriter

SERVICE = {
    "metadata": {"name": "ks-kubesoar-router", "namespace": "soar"},
    "spec": {
        "selector": {"app.kubernetes.io/component": "router"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"port": 9090}],
    },
}


def pod(namespace: str, component: str) -> dict[str, object]:
    return {
        "metadata": {"namespace": namespace, "labels": {"app.kubernetes.io/component": component}},
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8081}]}]},
    }


def test_flag_values_that_are_mounted_paths_are_rewritten():
    rewriter = PathRewriter([("/var/run/kubesoar/signing-key", "/state/pods/u/root/key")])
    words = [
        "--signing-key-file=/var/run/kubesoar/signing-key/signing-key",
        "/var/run/kubesoar/signing-key/signing-key",
        "--other=/etc/passwd",
        "--name=value=/var/run/kubesoar/signing-key",
    ]
    assert rewriter.rewrite_all(words) == [
        "--signing-key-file=/state/pods/u/root/key/signing-key",
        "/state/pods/u/root/key/signing-key",
        "--other=/etc/passwd",
        "--name=value=/var/run/kubesoar/signing-key",
    ]


def test_the_wildcard_address_becomes_the_pod_address_only_as_a_host():
    bind = podnet.bind_pod_address
    assert bind("--listen=0.0.0.0:8081", "127.1.0.4") == "--listen=127.1.0.4:8081"
    assert bind("http://0.0.0.0:8080/healthz", "127.1.0.4") == "http://127.1.0.4:8080/healthz"
    assert bind("--metrics-host=0.0.0.0", "127.1.0.4") == "--metrics-host=127.1.0.4"
    assert bind("0.0.0.0/0", "127.1.0.4") == "0.0.0.0/0"  # a CIDR, not a host
    assert bind("10.0.0.0:80", "127.1.0.4") == "10.0.0.0:80"


def test_service_names_resolve_to_a_ready_pod_and_its_target_port():
    ready = [(pod("other", "router"), "127.1.0.9"), (pod("soar", "router"), "127.1.0.3")]
    assert podnet.pick_backend(SERVICE, 80, ready) == "127.1.0.3:8081"  # named targetPort
    assert podnet.pick_backend(SERVICE, 9090, ready) == "127.1.0.3:9090"  # targetPort = port
    assert podnet.pick_backend(SERVICE, 81, ready) is None  # not a port of the Service
    assert podnet.pick_backend(SERVICE, 80, [(pod("soar", "operator"), "127.1.0.2")]) is None


def test_service_names_in_urls_are_replaced_and_unknown_ones_left_as_written():
    async def lookup(namespace: str, service: str, port: int) -> str | None:
        known = {("soar", "ks-kubesoar-router", 80): "127.1.0.3:8081"}
        return known.get((namespace, service, port))

    def resolve(value: str) -> str:
        return asyncio.run(podnet.resolve_services(value, lookup))

    assert resolve("http://ks-kubesoar-router.soar.svc:80/readyz") == "http://127.1.0.3:8081/readyz"
    assert resolve("http://ks-kubesoar-router.soar.svc/readyz") == "http://127.1.0.3:8081/readyz"
    assert resolve("ks-kubesoar-router.soar.svc.cluster.local:80") == "127.1.0.3:8081"
    assert resolve("http://nosuch.soar.svc:80/") == "http://nosuch.soar.svc:80/"
    assert resolve("ks-kubesoar-router.soar.svc") == "ks-kubesoar-router.soar.svc"  # no port
    assert resolve("example.com:80") == "example.com:80"
