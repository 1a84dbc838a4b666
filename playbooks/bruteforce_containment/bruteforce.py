"""Contain a brute-force attack on one account: suspend the account in Okta
and end its sessions, and block the source IP at the firewall, within
guardrails.

Guardrails, all from the environment (`spec.runtime.env`):

- `DRY_RUN` (default `true`): report what would be done and change nothing.
  Set it to `false` once the plan in the run results looks right.
- `ALLOWLIST_ACCOUNTS`: comma-separated logins (shell wildcards allowed, e.g.
  `breakglass@example.com,svc-*`) that are never suspended.
- `ALLOWLIST_CIDRS`: comma-separated networks never blocked. Addresses that
  are not globally routable (RFC 1918, loopback, ...) are never blocked either.
- `BLOCK_TTL_SECONDS` (default 86400): how long the firewall block lasts.

Integrations: Okta's Users API (secret `okta`, key `apiToken`; env `OKTA_URL`)
and a firewall block-list API (secret `firewall`, key `token`; env
`FIREWALL_API_URL`). The firewall request shape is generic: adapt `block_ip`
to your firewall (PAN-OS dynamic address groups, Cloudflare IP access rules,
...).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
from typing import Any
from urllib.parse import quote

import httpx
from kubesoar import Alert, RunContext, action, playbook

FALSE_WORDS = {"false", "0", "no", "off"}


class ContainmentIncomplete(Exception):
    """At least one containment step failed; the message says which."""


class ServiceBusy(Exception):
    """A 429 or 5xx: worth another attempt."""


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def dry_run() -> bool:
    return os.environ.get("DRY_RUN", "true").strip().lower() not in FALSE_WORDS


def account_of(alert: Alert) -> str | None:
    user = alert.raw.get("user")
    if isinstance(user, dict) and user.get("name"):
        return str(user["name"])
    return None


def account_allowlisted(account: str) -> bool:
    login = account.lower()
    return any(
        fnmatch.fnmatchcase(login, pattern.lower()) for pattern in _env_list("ALLOWLIST_ACCOUNTS")
    )


def ip_block_refusal(ip: str | None) -> str | None:
    """Why `ip` must not be blocked, or None when it may be."""
    if not ip:
        return "the alert has no source IP"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"{ip!r} is not an IP address"
    if not address.is_global:
        return f"{ip} is not a public address"
    for cidr in _env_list("ALLOWLIST_CIDRS"):
        if address in ipaddress.ip_network(cidr, strict=False):
            return f"{ip} is in the allow-listed network {cidr}"
    return None


def _check(response: httpx.Response, service: str) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        raise ServiceBusy(f"{service} answered {response.status_code}")
    response.raise_for_status()


def _okta(ctx: RunContext) -> tuple[str, dict[str, str]]:
    headers = {
        "Authorization": f"SSWS {ctx.secret('okta', 'apiToken')}",
        "Accept": "application/json",
    }
    return os.environ["OKTA_URL"].rstrip("/"), headers


@action(timeout=15, retries=2, retry_backoff=2.0)
async def find_user(ctx: RunContext, login: str) -> dict[str, Any] | None:
    """The Okta user with this login, or None."""
    base, headers = _okta(ctx)
    response = await ctx.http.get(f"{base}/api/v1/users/{quote(login, safe='@')}", headers=headers)
    if response.status_code == 404:
        return None
    _check(response, "okta")
    user: dict[str, Any] = response.json()
    return user


@action(timeout=15, retries=2, retry_backoff=2.0)
async def suspend_user(ctx: RunContext, user_id: str) -> None:
    """Suspend an ACTIVE Okta user: they cannot sign in until unsuspended."""
    base, headers = _okta(ctx)
    response = await ctx.http.post(
        f"{base}/api/v1/users/{user_id}/lifecycle/suspend", headers=headers
    )
    _check(response, "okta")


@action(timeout=15, retries=2, retry_backoff=2.0)
async def revoke_sessions(ctx: RunContext, user_id: str) -> None:
    """End every Okta session of the user."""
    base, headers = _okta(ctx)
    response = await ctx.http.delete(f"{base}/api/v1/users/{user_id}/sessions", headers=headers)
    _check(response, "okta")


@action(timeout=15, retries=2, retry_backoff=2.0)
async def block_ip(ctx: RunContext, ip: str, ttl_seconds: int, comment: str) -> str:
    """Add the IP to the firewall's block list; returns `blocked` or `already-blocked`."""
    base = os.environ["FIREWALL_API_URL"].rstrip("/")
    response = await ctx.http.post(
        f"{base}/v1/blocklist",
        headers={"Authorization": f"Bearer {ctx.secret('firewall', 'token')}"},
        json={"ip": ip, "ttlSeconds": ttl_seconds, "comment": comment},
    )
    if response.status_code == 409:
        return "already-blocked"
    _check(response, "firewall")
    return "blocked"


async def contain_account(ctx: RunContext, account: str | None, enforce: bool) -> dict[str, Any]:
    if not account:
        return {"action": "skipped", "reason": "the alert names no account"}
    if account_allowlisted(account):
        return {"login": account, "action": "skipped", "reason": "account is allow-listed"}
    user = await find_user(ctx, account)
    if user is None:
        return {"login": account, "action": "skipped", "reason": "no such user in Okta"}
    status = user.get("status")
    plan = ["suspend", "revoke-sessions"] if status == "ACTIVE" else ["revoke-sessions"]
    if status == "DEPROVISIONED":
        plan = []
    outcome = {"login": account, "userId": user["id"], "status": status, "plan": plan}
    if not enforce or not plan:
        return {**outcome, "action": "planned" if plan else "none"}
    if "suspend" in plan:
        await suspend_user(ctx, user["id"])
    await revoke_sessions(ctx, user["id"])
    return {**outcome, "action": "contained"}


async def contain_ip(ctx: RunContext, alert: Alert, enforce: bool) -> dict[str, Any]:
    ip = alert.source_ip
    refusal = ip_block_refusal(ip)
    if refusal is not None:
        return {"ip": ip, "action": "skipped", "reason": refusal}
    assert ip is not None
    ttl = int(os.environ.get("BLOCK_TTL_SECONDS", "86400"))
    if not enforce:
        return {"ip": ip, "action": "planned", "ttlSeconds": ttl}
    comment = f"kubesoar bruteforce_containment alert={alert.id} corr={ctx.correlation_id}"
    return {"ip": ip, "action": await block_ip(ctx, ip, ttl, comment), "ttlSeconds": ttl}


@playbook(
    trigger="webhook",
    conditions={
        "rule_name": {"$regex": r"(?i)brute.?force|failed (log[io]ns?|sign.?ins?)"},
        "raw.failed_logins": {"$gte": 10},
        "raw.user.name": {"$exists": True},
    },
    order=30,
    description="Many failed logins: suspend the Okta account and block the IP (guardrailed)",
)
async def contain_bruteforce(alert: Alert, ctx: RunContext) -> dict[str, Any]:
    enforce = not dry_run()
    account = account_of(alert)
    steps = await ctx.gather_limited(
        [lambda: contain_account(ctx, account, enforce), lambda: contain_ip(ctx, alert, enforce)],
        limit=2,
        return_exceptions=True,
    )
    failures = [
        f"{what}: {step}"
        for what, step in zip(("account", "ip"), steps, strict=True)
        if isinstance(step, BaseException)
    ]
    if failures:
        # The run fails so the Playbook's status shows it; the log keeps what did succeed.
        ctx.logger.error("containment incomplete: %s (steps: %s)", "; ".join(failures), steps)
        raise ContainmentIncomplete("; ".join(failures))
    result = {"mode": "enforce" if enforce else "dry-run", "account": steps[0], "ip": steps[1]}
    ctx.logger.info("bruteforce containment %s: %s", result["mode"], result)
    return result
