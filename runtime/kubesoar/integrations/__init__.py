"""Clients for the services playbooks call first, with what each call needs
in production built in: credentials from the Playbook's mounted Secrets, a
configurable base URL, cached lookups (per-integration TTLs), a token-bucket
rate limit per integration per Playbook, retries on 429/5xx honouring
`Retry-After`, every call recorded as an action attempt on the run, and
credentials masked from errors.

    from kubesoar.integrations import VirusTotal

    report = await VirusTotal().lookup_ip("203.0.113.7")   # Secret virustotal/api_key

The same classes answer to OpenSOAR's module paths and method names (see
docs/migrating-from-opensoar.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubesoar.integrations._base import Integration
    from kubesoar.integrations._cache import answer_cache
    from kubesoar.integrations._clock import FakeClock, set_clock
    from kubesoar.integrations._errors import IntegrationError, IntegrationHTTPError, NotConnected
    from kubesoar.integrations._ratelimit import reset_buckets
    from kubesoar.integrations._types import ActionDefinition, HealthCheckResult
    from kubesoar.integrations.abuseipdb import AbuseIPDB
    from kubesoar.integrations.defender import Defender
    from kubesoar.integrations.elastic import Elastic
    from kubesoar.integrations.email import Email
    from kubesoar.integrations.greynoise import GreyNoise
    from kubesoar.integrations.llm import LLMClient, LLMResponse
    from kubesoar.integrations.shodan import Shodan
    from kubesoar.integrations.slack import Slack
    from kubesoar.integrations.splunk import Splunk
    from kubesoar.integrations.virustotal import VirusTotal

_HOMES = {
    "Integration": "_base",
    "answer_cache": "_cache",
    "FakeClock": "_clock",
    "set_clock": "_clock",
    "IntegrationError": "_errors",
    "IntegrationHTTPError": "_errors",
    "NotConnected": "_errors",
    "reset_buckets": "_ratelimit",
    "ActionDefinition": "_types",
    "HealthCheckResult": "_types",
    "AbuseIPDB": "abuseipdb",
    "Defender": "defender",
    "Elastic": "elastic",
    "Email": "email",
    "GreyNoise": "greynoise",
    "LLMClient": "llm",
    "LLMResponse": "llm",
    "Shodan": "shodan",
    "Slack": "slack",
    "Splunk": "splunk",
    "VirusTotal": "virustotal",
}

__all__ = [
    "AbuseIPDB",
    "ActionDefinition",
    "Defender",
    "Elastic",
    "Email",
    "FakeClock",
    "GreyNoise",
    "HealthCheckResult",
    "Integration",
    "IntegrationError",
    "IntegrationHTTPError",
    "LLMClient",
    "LLMResponse",
    "NotConnected",
    "Shodan",
    "Slack",
    "Splunk",
    "VirusTotal",
    "answer_cache",
    "reset_buckets",
    "set_clock",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kubesoar.integrations' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"kubesoar.integrations.{home}"), name)
    globals()[name] = value
    return value
