"""Contain a brute-force attack on one account: suspend the account in Okta
and end its sessions, and block the source IP at the firewall, within
guardrails.

Guardrails, all from the environment (`spec.runtime.env`):

- `DRY_RUN` (default `true`): look the user up, report what would be done, and
  change nothing. Set it to `false` once the plans in the run results look right.
- `ALLOWLIST_ACCOUNTS`: comma-separated logins (shell wildcards allowed, e.g.
  `breakglass@example.com,svc-*`) that are never suspended.
- `ALLOWLIST_CIDRS`: comma-separated networks never blocked. Addresses that
  are not globally routable (RFC 1918, loopback, documentation, ...) are never
  blocked either.
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
from dataclasses import dataclass, replace
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


def _required_env(name: str) -> str:
    value = os.environ.get(name, "").rstrip("/")
    if not value:
        raise RuntimeError(f"{name} is not set (spec.runtime.env)")
    return value


@dataclass(frozen=True, repr=False)
class Config:
    """Everything read from the environment and the secrets, read once per
    run and before any call, so a missing value fails the run at once."""

    enforce: bool
    okta_url: str
    okta_token: str
    firewall_url: str = ""
    firewall_token: str = ""
    block_ttl_seconds: int = 86400

    @classmethod
    def load(cls, ctx: RunContext) -> Config:
        enforce = os.environ.get("DRY_RUN", "true").strip().lower() in FALSE_WORDS
        config = cls(
            enforce=enforce,
            okta_url=_required_env("OKTA_URL"),
            okta_token=ctx.secret("okta", "apiToken"),
            block_ttl_seconds=int(os.environ.get("BLOCK_TTL_SECONDS", "86400")),
        )
        if enforce:  # a dry run never calls the firewall
            config = replace(
                config,
                firewall_url=_required_env("FIREWALL_API_URL"),
                firewall_token=ctx.secret("firewall", "token"),
            )
        return config

    @property
    def okta_headers(self) -> dict[str, str]:
        return {"Authorization": f"SSWS {self.okta_token}", "Accept": "application/json"}


def account_of(alert: Alert) -> str | None:
    user = alert.raw.get("user")
    if isinstance(user, dict) and user.get("name"):
        return str(user["name"])
    return None


def account_allowlisted(account: str) -> bool:
    login = account.lower()
    patterns = _env_list("ALLOWLIST_ACCOUNTS")
    return any(fnmatch.fnmatchcase(login, pattern.lower()) for pattern in patterns)


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


@action(timeout=15, retries=2, retry_backoff=1.5)
async def find_user(ctx: RunContext, config: Config, login: str) -> dict[str, Any] | None:
    """The Okta user with this login, or None."""
    response = await ctx.http.get(
        f"{config.okta_url}/api/v1/users/{quote(login, safe='@')}", headers=config.okta_headers
    )
    if response.status_code == 404:
        return None
    _check(response, "okta")
    user: dict[str, Any] = response.json()
    return user


@action(timeout=15, retries=2, retry_backoff=1.5)
async def suspend_user(ctx: RunContext, config: Config, user_id: str) -> None:
    """Suspend an ACTIVE Okta user: they cannot sign in until unsuspended."""
    response = await ctx.http.post(
        f"{config.okta_url}/api/v1/users/{user_id}/lifecycle/suspend", headers=config.okta_headers
    )
    _check(response, "okta")


@action(timeout=15, retries=2, retry_backoff=1.5)
async def revoke_sessions(ctx: RunContext, config: Config, user_id: str) -> None:
    """End every Okta session of the user."""
    response = await ctx.http.delete(
        f"{config.okta_url}/api/v1/users/{user_id}/sessions", headers=config.okta_headers
    )
    _check(response, "okta")


@action(timeout=15, retries=2, retry_backoff=1.5)
async def block_ip(ctx: RunContext, config: Config, ip: str, comment: str) -> str:
    """Add the IP to the firewall's block list; returns `blocked` or `already-blocked`."""
    response = await ctx.http.post(
        f"{config.firewall_url}/v1/blocklist",
        headers={"Authorization": f"Bearer {config.firewall_token}"},
        json={"ip": ip, "ttlSeconds": config.block_ttl_seconds, "comment": comment},
    )
    if response.status_code == 409:
        return "already-blocked"
    _check(response, "firewall")
    return "blocked"


async def contain_account(ctx: RunContext, config: Config, account: str | None) -> dict[str, Any]:
    if not account:
        return {"action": "skipped", "reason": "the alert names no account"}
    if account_allowlisted(account):
        return {"login": account, "action": "skipped", "reason": "account is allow-listed"}
    user = await find_user(ctx, config, account)
    if user is None:
        return {"login": account, "action": "skipped", "reason": "no such user in Okta"}
    status = user.get("status")
    # Okta suspends ACTIVE users only; sessions of any live user can be ended.
    if status == "DEPROVISIONED":
        plan = []
    elif status == "ACTIVE":
        plan = ["suspend", "revoke-sessions"]
    else:
        plan = ["revoke-sessions"]
    outcome = {"login": account, "userId": user["id"], "status": status, "plan": plan}
    if not plan:
        return {**outcome, "action": "none"}
    if not config.enforce:
        return {**outcome, "action": "planned"}
    if "suspend" in plan:
        await suspend_user(ctx, config, user["id"])
    await revoke_sessions(ctx, config, user["id"])
    return {**outcome, "action": "contained"}


async def contain_ip(ctx: RunContext, config: Config, alert: Alert) -> dict[str, Any]:
    ip = alert.source_ip
    refusal = ip_block_refusal(ip)
    if refusal is not None or ip is None:
        return {"ip": ip, "action": "skipped", "reason": refusal}
    outcome = {"ip": ip, "ttlSeconds": config.block_ttl_seconds}
    if not config.enforce:
        return {**outcome, "action": "planned"}
    comment = f"kubesoar bruteforce_containment alert={alert.id} corr={ctx.correlation_id}"
    return {**outcome, "action": await block_ip(ctx, config, ip, comment)}


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
    config = Config.load(ctx)
    account = account_of(alert)
    # Independent steps: one failing must not keep the other from running.
    steps = await ctx.gather_limited(
        [lambda: contain_account(ctx, config, account), lambda: contain_ip(ctx, config, alert)],
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
        done = [step for step in steps if not isinstance(step, BaseException)]
        ctx.logger.error("containment incomplete: %s; completed: %s", "; ".join(failures), done)
        raise ContainmentIncomplete("; ".join(failures))
    result = {
        "mode": "enforce" if config.enforce else "dry-run",
        "account": steps[0],
        "ip": steps[1],
    }
    ctx.logger.info("bruteforce containment (%s): %s", result["mode"], result)
    return result
