"""Login: `--kubeconfig` is that file and nothing else (whatever $KUBECONFIG says, read at
import time or now); the operator's login handler is the only one kopf runs; Events are
bounded: the same transition is posted at most once per window; an unusable kubeconfig
ends the operator with one error line, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
import yaml
from kopf._core.intents.causes import Activity
from kubesoar_operator import handlers, login
from kubesoar_operator.reconcile import EVENT_REPEAT_SECONDS, Reconciler, _State, _unrepeated
from kubesoar_operator.status import Transition

# kopf does not export the enum; the registry's lookup needs it.
AUTHENTICATION = Activity.AUTHENTICATION


def _kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_kubeconfig_flag_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _kubeconfig(tmp_path / "given", "https://127.0.0.1:6443", "tok-given")
    other = _kubeconfig(tmp_path / "other", "https://127.0.0.2:6443", "tok-other")
    monkeypatch.setenv("KUBECONFIG", str(other))
    info = login.connection_info(login.load_configuration(str(given)))
    assert info.server == "https://127.0.0.1:6443"
    assert (info.scheme, info.token) == ("Bearer", "tok-given")


def test_default_login_reads_kubeconfig_env_when_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set after the client library was imported: still honoured (read at call time).
    path = _kubeconfig(tmp_path / "late", "https://127.0.0.3:6443", "tok-late")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert login.load_configuration(None).host == "https://127.0.0.3:6443"


def test_a_missing_kubeconfig_is_a_login_error(tmp_path: Path) -> None:
    registry = kopf.OperatorRegistry()
    login.register(str(tmp_path / "missing"), registry)
    (handler,) = registry._activities.get_handlers(activity=AUTHENTICATION)
    with pytest.raises(kopf.LoginError, match="cannot load credentials"):
        handler.fn()


def test_only_the_operator_login_handler_runs(tmp_path: Path) -> None:
    """kopf's piggybacking logins are fallbacks: a registered handler excludes them."""
    smart = type(kopf.get_default_registry())()  # with kopf's fallback logins, as in cli
    fallbacks = smart._activities.get_handlers(activity=AUTHENTICATION)
    assert fallbacks  # the client library is installed, so kopf would piggyback on it
    handlers.register(cast(Reconciler, None), status_interval=1, kubeconfig="k", registry=smart)
    chosen = smart._activities.get_handlers(activity=AUTHENTICATION)
    assert [h.id for h in chosen] == ["kubeconfig"]


def test_posting_settings_keep_kopf_log_lines_out_of_events() -> None:
    settings = kopf.OperatorSettings()
    handlers.configure_settings(settings)
    assert settings.posting.enabled and not settings.posting.loggers


def test_the_same_event_is_posted_once_per_window() -> None:
    state = _State()
    crash = Transition(True, "RuntimeFailed", "RuntimeUnavailable: pod p: CrashLoopBackOff")
    ready = Transition(False, "Ready", "running main@sha1:a")
    suspended = Transition(False, "Suspended", "reconciliation suspended (spec.suspend)")
    posted: list[Any] = []
    for tick in range(100):  # a crash loop flapping between ready and not, every second
        posted += _unrepeated([crash, ready, suspended], state, now=float(tick))
    assert posted.count(crash) == 1 and posted.count(ready) == 1
    assert posted.count(suspended) == 100  # user actions are never folded
    later = _unrepeated([crash], state, now=100 + EVENT_REPEAT_SECONDS)
    assert later == [crash]
    assert len(state.posted) <= 3


def test_an_unusable_kubeconfig_exits_with_one_line(tmp_path: Path) -> None:
    kubesoar = Path(sys.executable).with_name("kubesoar")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    done = subprocess.run(
        [str(kubesoar), "operator", f"--kubeconfig={tmp_path / 'missing'}", "--namespace=x",
         "--artifact-listen=127.0.0.1:0", "--artifact-url=http://127.0.0.1:1",
         f"--signing-key-file={_key(tmp_path)}"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    errors = [x["message"] for x in lines if x["level"] == "error"]
    assert len(errors) == 1 and errors[0].startswith("cannot load Kubernetes credentials")
    assert "Traceback" not in done.stderr


def _key(tmp_path: Path) -> Path:
    key = tmp_path / "key"
    key.write_text("k" * 64)
    return key
