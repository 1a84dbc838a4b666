"""The `kubesoar` command: one entry point, one subcommand per role.

Each subcommand lives in the module that owns it and is imported lazily, so
that `kubesoar fetch` in an init container does not import kopf, and a
playbook author's `kubesoar run` does not need the Kubernetes client.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help). Each module exposes `main(argv) -> int`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("kubesoar_operator.cli", "run the Playbook/AlertSource operator"),
    "router": ("kubesoar_router.cli", "run the alert router"),
    "db": ("kubesoar_store.cli", "migrate the database schema (kubesoar db migrate)"),
    "runtime": ("kubesoar._server", "serve a playbook module in a runtime pod"),
    "fetch": ("kubesoar._fetch", "download, verify and unpack a playbook artifact"),
    "run": ("kubesoar._local", "run the playbooks an alert matches, locally"),
    "match": ("kubesoar._local", "show which entry points an alert triggers, and why"),
    "approve": ("kubesoar._decide", "approve a run that waits for approval (uses kubectl)"),
    "deny": ("kubesoar._decide", "deny a run that waits for approval (uses kubectl)"),
}


# Subcommands whose dependencies come with an extra, not with `pip install kubesoar`.
EXTRAS: dict[str, str] = {"operator": "operator", "router": "router", "db": "router"}


def _usage() -> str:
    lines = ["usage: kubesoar <command> [options]", "       kubesoar --version", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "`kubesoar <command> --help` describes each command's options."]
    return "\n".join(lines)


def version() -> str:
    """The installed distribution's version (package metadata, not a constant)."""
    # Imported here: it costs a runtime pod's start ~0.1 s (email parsing) for `--version`.
    from importlib import metadata

    try:
        return metadata.version("kubesoar")
    except metadata.PackageNotFoundError:  # imported from a source tree, not installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if args else 2
    if args[0] in {"-V", "--version"}:
        print(f"kubesoar {version()}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"kubesoar: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, _ = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if name in EXTRAS and exc.name and exc.name.split(".")[0] != "kubesoar":
            # A playbook author's `pip install kubesoar` has no operator/router dependencies.
            print(
                f"kubesoar {name}: needs {exc.name!r}; install it with "
                f"pip install 'kubesoar[{EXTRAS[name]}]'",
                file=sys.stderr,
            )
            return 3
        raise
    entry = getattr(module, f"main_{name}", None) or module.main
    result: int = entry(rest)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
