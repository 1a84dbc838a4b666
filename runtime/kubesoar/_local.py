"""`kubesoar run` and `kubesoar match`: the same loader and engine as the
pod, on an author's machine."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kubesoar._alert import OPENSOAR_SEVERITY, Alert
from kubesoar._approval import always
from kubesoar._engine import Engine, UnknownEntryPoints
from kubesoar._loader import LoadedModule, load_target
from kubesoar._logs import configure_json_logging
from kubesoar._opensoar_sdk import is_opensoar_entry

__all__ = ["load_alert", "main_match", "main_run"]

MAX_ALERT_BYTES = 10 * 1024 * 1024


class _UsageError(Exception):
    pass


def load_alert(path: str | Path, *, opensoar: bool = False) -> Alert:
    """An Alert from a JSON file (`-` reads stdin); `opensoar`: severity folded
    as OpenSOAR does (unknown -> medium, info -> low)."""
    try:
        text = sys.stdin.read(MAX_ALERT_BYTES) if str(path) == "-" else Path(path).read_text()
        data = json.loads(text)
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise _UsageError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("alert"), dict):
        data = data["alert"]  # a recorded POST /v1/runs body
    try:
        return Alert.model_validate(data, context=OPENSOAR_SEVERITY if opensoar else None)
    except ValidationError as exc:
        raise _UsageError(f"{path} is not a valid alert: {exc}") from None


def _load(target: str) -> LoadedModule:
    loaded = load_target(target)
    if loaded.error is not None:
        raise _UsageError(f"cannot load {target}: {loaded.error}")
    if not loaded.entry_points:
        raise _UsageError(
            f"{target} defines no entry points: mark a function with @playbook "
            "(from kubesoar, or from opensoar)"
        )
    return loaded


def _wants_opensoar(loaded: LoadedModule) -> bool:
    return any(is_opensoar_entry(entry) for entry in loaded.entry_points)


def _parser(command: str, help_: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"kubesoar {command}", description=help_)
    parser.add_argument("target", help="a .py file, a folder (every module), or a module name")
    parser.add_argument("--alert", required=True, help="alert JSON file (- for stdin)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def match_report(loaded: LoadedModule, alert: Alert) -> list[dict[str, Any]]:
    match_dict = alert.as_match_dict()
    rows = []
    for entry in loaded.entry_points:
        reasons = list(entry.condition.explain(match_dict))
        if not entry.triggered_by(alert.source):
            reasons.insert(
                0, f"trigger {entry.trigger!r} does not take alerts from {alert.source!r}"
            )
        rows.append(
            {"name": entry.name, "order": entry.order, "matches": not reasons, "reasons": reasons}
        )
    return rows


def main_match(argv: Sequence[str] | None = None) -> int:
    args = _parser("match", "Show which entry points an alert triggers, and why not.").parse_args(
        argv
    )
    try:
        loaded = _load(args.target)
        alert = load_alert(args.alert, opensoar=_wants_opensoar(loaded))
    except _UsageError as exc:
        print(f"kubesoar match: {exc}", file=sys.stderr)
        return 2
    rows = match_report(loaded, alert)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            if row["matches"]:
                print(f"MATCH     {row['name']} (order {row['order']})")
            else:
                print(f"NO MATCH  {row['name']}: " + "; ".join(row["reasons"]))
    return 0


def main_run(argv: Sequence[str] | None = None) -> int:
    parser = _parser("run", "Run the entry points an alert triggers, locally.")
    parser.add_argument(
        "--secrets-dir",
        help="folder with <secret>/<key> files "
        "(default: $KUBESOAR_SECRETS_DIR, else /var/run/kubesoar/secrets)",
    )
    parser.add_argument("--playbook", action="append", help="run just this entry point")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per entry point")
    parser.add_argument(
        "--approvals",
        choices=("approve", "deny"),
        help="decide every ctx.approval of the run this way (default: they fail, as nobody"
        " can decide outside the cluster)",
    )
    args = parser.parse_args(argv)
    if args.json:
        configure_json_logging(logging.WARNING)
    else:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        loaded = _load(args.target)
        alert = load_alert(args.alert, opensoar=_wants_opensoar(loaded))
        engine = Engine(
            loaded.entry_points,
            default_timeout=args.timeout,
            secrets_dir=args.secrets_dir,
            approver=(
                None
                if args.approvals is None
                else always(args.approvals == "approve", by="kubesoar run --approvals")
            ),
        )
        selected = engine.select(alert, args.playbook)
    except (_UsageError, UnknownEntryPoints) as exc:
        print(f"kubesoar run: {exc}", file=sys.stderr)
        return 2
    run = asyncio.run(engine.execute(engine.create_run(alert, selected)))
    if args.json:
        print(json.dumps(run.to_json(), indent=2))
    else:
        if not selected:
            print("no entry point matched this alert (try `kubesoar match`)")
        for result in run.results:
            print(f"{result['name']}: {result['status']} in {result['durationSeconds']:.3f}s")
            if result.get("error"):
                print(f"  error: {result['error']}")
                if result.get("where"):  # the traceback is in the log line above
                    print(f"  at: {result['where']}")
            else:
                print("  result: " + json.dumps(result.get("result")))
        for attempt in run.attempts:
            print(
                f"  action {attempt['action']} attempt {attempt['attempt']}: {attempt['status']}"
                + (f" ({attempt['error']})" if attempt["error"] else "")
            )
    return 0 if run.status == "succeeded" else 1


main = main_run
