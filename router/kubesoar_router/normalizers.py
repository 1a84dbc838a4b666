"""Payloads as senders post them -> the fields of kubesoar's `Alert`.

One function per `format`, each returning keyword arguments for `Alert`
(`build_alert` adds the id, source, receive time, tenant and the raw payload,
which is always kept whole). A payload of the wrong shape raises
`NormalizeError` with a reason the router returns as a 400.

Severity mapping (the Alert's scale is info < low < medium < high < critical):

- generic: `severity` as the runtime folds it (`kubesoar.normalize_severity`: the
  five names in any case, informational, moderate, warning, error, fatal..., or 0-4);
  missing -> medium; an unknown word is a 400.
- elastic: `kibana.alert.severity` (names as above, unknown -> medium), else
  `kibana.alert.risk_score`: 0-21 low, 22-47 medium, 48-73 high, 74-100 critical.
- splunk: `result.severity`, else `result.urgency` (Splunk ES); names as above.
- defender: `severity`: informational -> info, low, medium, high; unknown -> medium.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubesoar import Alert, normalize_severity
from kubesoar._conditions import MISSING, lookup_path

DEFAULT_SEVERITY = "medium"
_HASH = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")
MAX_TEXT = 10_000
IOC_KINDS = ("ips", "domains", "hashes", "urls")
_SPLUNK_HASH_FIELDS = ("file_hash", "hash", "md5", "sha1", "sha256")


class NormalizeError(ValueError):
    """The payload does not have the shape its AlertSource's format expects."""


Fields = dict[str, Any]


def severity_from_name(value: Any) -> str:
    """The runtime's vocabulary (`normalize_severity`); anything else -> medium."""
    try:
        return normalize_severity(value)
    except ValueError:
        return DEFAULT_SEVERITY


def _strict_severity(value: Any) -> str:
    if value is None:
        return DEFAULT_SEVERITY
    try:
        return normalize_severity(value)
    except ValueError as exc:
        raise NormalizeError(f"severity: {exc}") from None


def severity_from_risk_score(score: Any) -> str:
    if isinstance(score, bool) or not isinstance(score, int | float):
        return DEFAULT_SEVERITY
    if score < 22:
        return "low"
    if score < 48:
        return "medium"
    if score < 74:
        return "high"
    return "critical"


def _get(payload: Mapping[str, Any], path: str) -> Any:
    value = lookup_path(payload, path)
    return None if value is MISSING else value


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value)
    return text[:MAX_TEXT] if text else None


def _first(payload: Mapping[str, Any], *paths: str) -> Any:
    for path in paths:
        value = _get(payload, path)
        if value not in (None, "", []):
            return value
    return None


def _strings(values: Iterable[Any]) -> list[str]:
    """Flatten scalars and lists of scalars into unique non-empty strings, in order."""
    seen: dict[str, None] = {}
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str | int | float) and not isinstance(item, bool) and str(item):
                seen.setdefault(str(item), None)
    return list(seen)


def _ips(values: Iterable[Any]) -> list[str]:
    found = []
    for item in _strings(values):
        try:
            ipaddress.ip_address(item)
        except ValueError:
            continue
        found.append(item)
    return found


def _hashes(values: Iterable[Any]) -> list[str]:
    return [h.lower() for h in _strings(values) if _HASH.match(h)]


def _require_object(payload: Any) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise NormalizeError(f"the payload must be a JSON object, got {type(payload).__name__}")
    return payload


def normalize_generic(payload: Mapping[str, Any]) -> Fields:
    """kubesoar's own shape: the Alert's field names, all optional but `title`."""
    title = _text(payload.get("title")) or _text(payload.get("rule_name"))
    if title is None:
        raise NormalizeError("generic alerts need a 'title' (or 'rule_name') string")
    iocs = payload.get("iocs") or {}
    if not isinstance(iocs, Mapping):
        raise NormalizeError("'iocs' must be an object with lists ips, domains, hashes, urls")
    tags = payload.get("tags") or []
    if not isinstance(tags, list):
        raise NormalizeError("'tags' must be a list of strings")
    return {
        "source": _text(payload.get("source")) or "generic",
        "source_id": _text(payload.get("source_id")) or _text(payload.get("id")),
        "title": title,
        "description": _text(payload.get("description")) or "",
        "severity": _strict_severity(payload.get("severity")),
        "status": _text(payload.get("status")) or "new",
        "source_ip": _text(payload.get("source_ip")),
        "dest_ip": _text(payload.get("dest_ip")),
        "hostname": _text(payload.get("hostname")),
        "rule_name": _text(payload.get("rule_name")),
        "iocs": {key: _strings([iocs.get(key) or []]) for key in IOC_KINDS},
        "tags": _strings([tags]),
    }


_ELASTIC_STATUS = {"open": "new", "acknowledged": "in_progress", "closed": "resolved"}


def normalize_elastic(payload: Mapping[str, Any]) -> Fields:
    """A Kibana detection alert document (nested or flattened `kibana.alert.*`)."""
    rule_name = _text(_get(payload, "kibana.alert.rule.name"))
    uuid = _text(_get(payload, "kibana.alert.uuid"))
    if rule_name is None and uuid is None:
        raise NormalizeError(
            "elastic alerts need kibana.alert.rule.name or kibana.alert.uuid "
            "(post the alert document, e.g. the connector's {{context.alerts}} item)"
        )
    severity_name = _get(payload, "kibana.alert.severity")
    severity = (
        severity_from_name(severity_name)
        if isinstance(severity_name, str)
        else severity_from_risk_score(_get(payload, "kibana.alert.risk_score"))
    )
    source_ip = _text(_get(payload, "source.ip"))
    dest_ip = _text(_get(payload, "destination.ip"))
    workflow = _text(_get(payload, "kibana.alert.workflow_status")) or "open"
    return {
        "source": "elastic",
        "source_id": uuid,
        "title": rule_name or "Elastic detection alert",
        "description": _text(
            _first(payload, "kibana.alert.reason", "kibana.alert.rule.description", "message")
        )
        or "",
        "severity": severity,
        "status": _ELASTIC_STATUS.get(workflow, workflow),
        "source_ip": source_ip,
        "dest_ip": dest_ip,
        "hostname": _text(_first(payload, "host.name", "host.hostname")),
        "rule_name": rule_name,
        "iocs": {
            "ips": _ips([source_ip, dest_ip, _get(payload, "threat.indicator.ip")]),
            "domains": _strings(
                [
                    _get(payload, "dns.question.name"),
                    _get(payload, "url.domain"),
                    _get(payload, "destination.domain"),
                ]
            ),
            "hashes": _hashes(
                [
                    _get(payload, f"{obj}.hash.{algo}")
                    for obj in ("file", "process")
                    for algo in ("md5", "sha1", "sha256")
                ]
            ),
            "urls": _strings([_get(payload, "url.full"), _get(payload, "url.original")]),
        },
        "tags": _strings([_get(payload, "kibana.alert.rule.tags") or []]),
    }


def normalize_splunk(payload: Mapping[str, Any]) -> Fields:
    """Splunk's webhook alert action: {result, sid, search_name, results_link, ...}."""
    result = payload.get("result")
    search_name = _text(payload.get("search_name"))
    if not isinstance(result, Mapping) or search_name is None:
        raise NormalizeError("splunk alerts need 'search_name' and a 'result' object")
    source_ip = _text(_first(result, "src_ip", "src"))
    dest_ip = _text(_first(result, "dest_ip", "dest"))
    hostname = _text(_first(result, "host", "dest_host", "hostname"))
    severity_name = _first(result, "severity", "urgency")
    return {
        "source": "splunk",
        "source_id": _text(payload.get("sid")),
        "title": _text(result.get("title")) or search_name,
        "description": _text(_first(result, "description", "_raw")) or "",
        "severity": severity_from_name(severity_name),
        "status": "new",
        "source_ip": source_ip if _ips([source_ip]) else None,
        "dest_ip": dest_ip if _ips([dest_ip]) else None,
        "hostname": hostname,
        "rule_name": search_name,
        "iocs": {
            "ips": _ips([source_ip, dest_ip]),
            "domains": _strings([_first(result, "domain", "query", "dest_domain")]),
            "hashes": _hashes([result.get(k) for k in _SPLUNK_HASH_FIELDS]),
            "urls": _strings([result.get("url")]),
        },
        "tags": _strings([_first(payload, "app"), result.get("tag")]),
    }


_DEFENDER_STATUS = {"new": "new", "inprogress": "in_progress", "resolved": "resolved"}


def _evidence_kind(item: Mapping[str, Any]) -> str:
    # Graph v2: "@odata.type": "#microsoft.graph.security.ipEvidence";
    # Defender for Endpoint: "entityType": "Ip".
    odata = item.get("@odata.type")
    if isinstance(odata, str):
        return odata.rsplit(".", 1)[-1].removesuffix("Evidence").lower()
    entity = item.get("entityType")
    return entity.lower() if isinstance(entity, str) else ""


def normalize_defender(payload: Mapping[str, Any]) -> Fields:
    """A Microsoft Graph security alert (v2) or a Defender for Endpoint API alert."""
    value = payload.get("value")
    if isinstance(value, list):  # a Graph list response: one alert per request
        if len(value) != 1:
            raise NormalizeError("defender: post one alert per request ('value' holds many)")
        payload = _require_object(value[0])
    alert_id = _text(payload.get("id"))
    title = _text(payload.get("title"))
    if alert_id is None or title is None:
        raise NormalizeError("defender alerts need 'id' and 'title'")
    evidence = payload.get("evidence") or []
    if not isinstance(evidence, list):
        raise NormalizeError("defender: 'evidence' must be a list")
    ips, domains, hashes, urls, hosts = [], [], [], [], []
    for item in evidence:
        if not isinstance(item, Mapping):
            continue
        kind = _evidence_kind(item)
        if kind == "ip":
            ips.append(item.get("ipAddress"))
        elif kind == "url":
            urls.append(item.get("url"))
        elif kind in {"device", "machine"}:
            hosts.append(_first(item, "deviceDnsName", "computerDnsName", "hostName"))
        elif kind in {"file", "process"}:
            details = item.get("fileDetails") or item.get("imageFile") or item
            if isinstance(details, Mapping):
                hashes += [details.get(k) for k in ("sha1", "sha256", "md5")]
        elif kind in {"dns", "domain"}:
            domains.append(_first(item, "domainName", "dnsServerIp"))
    hostname = _text(payload.get("computerDnsName")) or next(iter(_strings(hosts)), None)
    status = _text(payload.get("status")) or "new"
    ip_list = _ips(ips)
    return {
        "source": "defender",
        "source_id": alert_id,
        "title": title,
        "description": _text(payload.get("description")) or "",
        "severity": severity_from_name(payload.get("severity")),
        "status": _DEFENDER_STATUS.get(status.lower(), status),
        "source_ip": ip_list[0] if ip_list else None,
        "dest_ip": None,
        "hostname": hostname,
        "rule_name": _text(_first(payload, "detectorId", "detectionSource", "category")),
        "iocs": {
            "ips": ip_list,
            "domains": _strings(domains),
            "hashes": _hashes(hashes),
            "urls": _strings(urls),
        },
        "tags": _strings([payload.get("category"), payload.get("mitreTechniques") or []]),
    }


NORMALIZERS: dict[str, Callable[[Mapping[str, Any]], Fields]] = {
    "generic": normalize_generic,
    "elastic": normalize_elastic,
    "splunk": normalize_splunk,
    "defender": normalize_defender,
}


def build_alert(fmt: str, payload: Any, *, alert_id: str, tenant: str, received_at: Any) -> Alert:
    """Normalize `payload` of format `fmt`; raises `NormalizeError` on a bad shape."""
    fields = NORMALIZERS[fmt](_require_object(payload))
    try:
        return Alert(
            id=alert_id, tenant=tenant, received_at=received_at, raw=dict(payload), **fields
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise NormalizeError(f"{fmt}: {_first_error(exc)}") from None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg', 'invalid')}"
    return str(exc)
