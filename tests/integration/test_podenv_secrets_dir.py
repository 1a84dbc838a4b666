"""The node agent maps env paths into the pod's folders, a folder above mount
paths included: KUBESOAR_SECRETS_DIR (the parent of one Secret mount per
integration) must name the folder holding the Secret volumes on this machine,
or `ctx.secret()` in a runtime pod on the local cluster finds nothing.

Pure parts of hack/localcluster (no cluster): PathRewriter, and a runtime pod as
the operator renders it, its volumes set up by PodVolumes."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from kubesoar._secrets import SecretNotFound, Secrets
from kubesoar_operator import render
from kubesoar_operator.spec import parse_spec

from hack.localcluster import podenv
from hack.localcluster.podvolumes import PodVolumes

SECRETS = "/var/run/kubesoar/secrets"


def test_a_folder_above_mount_paths_maps_to_their_common_folder() -> None:
    rewriter = podenv.PathRewriter(
        [
            (f"{SECRETS}/vt", f"/pod/root{SECRETS}/vt"),
            (f"{SECRETS}/slack/", f"/pod/root{SECRETS}/slack"),
            ("/workspace", "/pod/root/workspace"),
        ]
    )
    assert rewriter.rewrite(SECRETS, parents=True) == f"/pod/root{SECRETS}"
    assert rewriter.rewrite(SECRETS + "/", parents=True) == f"/pod/root{SECRETS}/"
    assert rewriter.rewrite("/var/run", parents=True) == "/pod/root/var/run"
    # Mount paths and paths under them map as before, with or without `parents`.
    assert rewriter.rewrite(f"{SECRETS}/vt/apiKey", parents=True) == f"/pod/root{SECRETS}/vt/apiKey"
    assert rewriter.rewrite("/workspace", parents=True) == "/pod/root/workspace"
    # Not a folder above a mount path, or not asked for: left as written.
    assert rewriter.rewrite(SECRETS) == SECRETS
    assert rewriter.rewrite("/var/run/kube", parents=True) == "/var/run/kube"
    assert rewriter.rewrite(f"{SECRETS}-old", parents=True) == f"{SECRETS}-old"
    assert rewriter.rewrite("/", parents=True) == "/"
    assert rewriter.rewrite("relative/var", parents=True) == "relative/var"
    assert rewriter.rewrite_all([SECRETS]) == [SECRETS]  # command words: mount paths only


def test_a_folder_whose_mounts_live_apart_is_left_as_written() -> None:
    # A subPath mount (or a volume mounted first elsewhere) has its folder outside
    # <pod root>/<folder>: no one folder here shows what the container sees there.
    rewriter = podenv.PathRewriter(
        [("/etc/app/a", "/pod/root/etc/app/a"), ("/etc/app/b", "/pod/volumes/b/sub")]
    )
    assert rewriter.rewrite("/etc/app", parents=True) == "/etc/app"
    assert rewriter.rewrite("/etc/app/b/x", parents=True) == "/pod/volumes/b/sub/x"


def test_rewrite_env_maps_the_spec_and_keeps_the_agents_own_values() -> None:
    rewriter = podenv.PathRewriter([(f"{SECRETS}/vt", f"/pod/root{SECRETS}/vt"), ("/tmp", "/p/t")])
    base = {"HOME": "/tmp/state/home", "TMPDIR": "/tmp/state/tmp"}
    env = {**base, "KUBESOAR_SECRETS_DIR": SECRETS, "TMPDIR": "/tmp", "LEVEL": "debug"}
    assert rewriter.rewrite_env(env, base) == {
        "HOME": "/tmp/state/home",  # the agent's own: a host path already
        "TMPDIR": "/p/t",  # the spec's value replaced the agent's, and is mapped
        "KUBESOAR_SECRETS_DIR": f"/pod/root{SECRETS}",
        "LEVEL": "debug",
    }


class _Objects:
    def __init__(self, secrets: dict[str, dict[str, str]]) -> None:
        self.secrets = secrets

    async def secret(self, name: str) -> dict[str, Any] | None:
        data = self.secrets.get(name)
        if data is None:
            return None
        return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}

    async def config_map(self, name: str) -> dict[str, Any] | None:
        return None

    async def service_account_token(self, audience: str | None, expiration: int) -> str:
        raise AssertionError("runtime pods mount no token")


async def test_runtime_pod_reads_its_secrets_through_the_rewritten_secrets_dir(
    tmp_path: Path,
) -> None:
    spec = parse_spec(
        {
            "source": {"git": {"url": "https://g.example/a.git", "ref": {"branch": "main"}}},
            "module": "triage",
            "runtime": {
                "secrets": [
                    {"name": "virustotal", "secretRef": {"name": "vt-api"}},
                    {"name": "slack", "secretRef": {"name": "slack-bot"}},
                ]
            },
        }
    )
    ctx = render.RenderContext(
        name="phish",
        namespace="tenant-a",
        spec=spec,
        commit="a" * 40,
        revision="main@sha1:" + "a" * 40,
        digest="d" * 64,
        artifact_url="http://127.0.0.1:8090/artifacts/tenant-a/phish/x.tar.gz?expires=1&sig=s",
    )
    template = render.deployment(ctx)["spec"]["template"]
    pod = {"metadata": {**template["metadata"], "name": "phish-0", "namespace": "tenant-a"}}
    pod["spec"] = {**template["spec"], "nodeName": "local"}
    (container,) = pod["spec"]["containers"]
    objects = _Objects({"vt-api": {"apiKey": "vt-key-123"}, "slack-bot": {"token": "xoxb-1"}})

    pod_dir = tmp_path / "pods" / "uid-1"
    volumes = PodVolumes(pod, pod_dir)
    await volumes.set_up(objects)
    rewriter = podenv.PathRewriter(volumes.mounts(container))
    base = {"HOME": str(pod_dir / "home")}
    env = rewriter.rewrite_env(
        await podenv.resolve_env(pod, container, "127.1.0.9", objects, base), base
    )

    root = (pod_dir / "root").resolve()
    assert env["KUBESOAR_SECRETS_DIR"] == str(root / SECRETS.lstrip("/"))
    assert env["KUBESOAR_WORKSPACE"] == str(root / render.WORKSPACE_DIR.lstrip("/"))
    secrets = Secrets(env["KUBESOAR_SECRETS_DIR"])
    assert secrets.get("virustotal", "apiKey") == "vt-key-123"
    assert secrets.get("slack", "token") == "xoxb-1"
    with pytest.raises(SecretNotFound):
        secrets.get("virustotal", "missing")
    # As rendered, unmapped: the folder does not exist on this machine.
    with pytest.raises(SecretNotFound):
        Secrets(SECRETS).get("virustotal", "apiKey")
