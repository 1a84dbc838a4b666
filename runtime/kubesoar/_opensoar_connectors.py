"""OpenSOAR's integration classes, by OpenSOAR's names, over
`kubesoar.integrations`.

Each is the kubesoar client with OpenSOAR's manners: it checks its config
when constructed, wants `connect()` before use, and hands a vendor's error
answer back as data (as OpenSOAR's clients do) instead of raising; the
failed request is still recorded as a failed action attempt on the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from kubesoar.integrations._base import Integration
from kubesoar.integrations.abuseipdb import AbuseIPDB
from kubesoar.integrations.defender import Defender
from kubesoar.integrations.elastic import Elastic
from kubesoar.integrations.email import Email
from kubesoar.integrations.greynoise import GreyNoise
from kubesoar.integrations.shodan import Shodan
from kubesoar.integrations.slack import Slack
from kubesoar.integrations.splunk import Splunk
from kubesoar.integrations.virustotal import VirusTotal

__all__ = ["CONNECTORS"]


class _OpenSOARStyle(Integration):
    error_answers: ClassVar[str] = "return"

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._validate()  # OpenSOAR validates in the constructor

    @property
    def integration_type(self) -> str:
        return self.name


class VirusTotalIntegration(_OpenSOARStyle, VirusTotal):
    pass


class AbuseIPDBIntegration(_OpenSOARStyle, AbuseIPDB):
    pass


class GreyNoiseIntegration(_OpenSOARStyle, GreyNoise):
    pass


class ShodanIntegration(_OpenSOARStyle, Shodan):
    pass


class SlackIntegration(_OpenSOARStyle, Slack):
    pass


class EmailIntegration(_OpenSOARStyle, Email):
    async def connect(self) -> None:
        self._connected = True  # OpenSOAR's email client sends without connect()

    def _require_connected(self) -> None:
        self._connected = True


class SplunkIntegration(_OpenSOARStyle, Splunk):
    pass


class ElasticIntegration(_OpenSOARStyle, Elastic):
    pass


class MSDefenderIntegration(_OpenSOARStyle, Defender):
    pass


# opensoar.integrations.<vendor>.connector -> the names it exports
CONNECTORS: dict[str, dict[str, type[Integration]]] = {
    "virustotal": {"VirusTotalIntegration": VirusTotalIntegration},
    "abuseipdb": {"AbuseIPDBIntegration": AbuseIPDBIntegration},
    "greynoise": {"GreyNoiseIntegration": GreyNoiseIntegration},
    "shodan": {"ShodanIntegration": ShodanIntegration},
    "slack": {"SlackIntegration": SlackIntegration},
    "email": {"EmailIntegration": EmailIntegration},
    "splunk": {"SplunkIntegration": SplunkIntegration},
    "elastic": {"ElasticIntegration": ElasticIntegration},
    "msdefender": {"MSDefenderIntegration": MSDefenderIntegration},
}
