"""Look the source IP up, search the SIEMs, isolate the host (OpenSOAR style)."""

from opensoar import action, get_current_alert_id, playbook


@action(name="intel", timeout=30, retries=1)
async def intel(ip: str) -> dict:
    from opensoar.config import settings
    from opensoar.integrations.greynoise.connector import GreyNoiseIntegration
    from opensoar.integrations.shodan.connector import ShodanIntegration

    gn = GreyNoiseIntegration({"api_key": settings.greynoise_api_key})
    shodan = ShodanIntegration({"api_key": settings.shodan_api_key})
    await gn.connect()
    await shodan.connect()
    try:
        quick = await gn.quick_lookup(ip)
        host = await shodan.host_info(ip)
    finally:
        await gn.disconnect()
        await shodan.disconnect()
    return {"noise": quick.get("noise"), "ports": host.get("ports")}


@action(name="siem", timeout=60)
async def siem(ip: str, hostname: str) -> dict:
    from opensoar.integrations.elastic.connector import ElasticIntegration
    from opensoar.integrations.splunk.connector import SplunkIntegration

    splunk, elastic = SplunkIntegration({}), ElasticIntegration({})
    await splunk.connect()
    await elastic.connect()
    try:
        search = await splunk.run_search(f"index=main src_ip={ip}", earliest="-24h")
        signals = await elastic.get_alerts({"term": {"host.name": hostname}}, size=5)
    finally:
        await splunk.disconnect()
        await elastic.disconnect()
    return {
        "splunk_rows": len(search["results"]),
        "elastic_hits": signals["hits"]["total"]["value"],
    }


@action(name="isolate", timeout=30)
async def isolate(hostname: str) -> dict:
    from opensoar.integrations.msdefender.connector import MSDefenderIntegration

    defender = MSDefenderIntegration({})
    await defender.connect()
    try:
        machines = await defender.list_machines(odata_filter=f"computerDnsName eq '{hostname}'")
        action_ = await defender.isolate_machine(
            machines[0]["id"], comment=f"alert {get_current_alert_id()}", isolation_type="Selective"
        )
    finally:
        await defender.disconnect()
    return {
        "machine": action_["machineId"],
        "type": action_["type"],
        "status": action_["status"],
        "comment": action_["requestorComment"],
    }


@playbook(trigger="webhook", conditions={"tags": "endpoint"}, order=5)
async def contain(alert_data):
    seen = await intel(alert_data.source_ip)
    searched = await siem(alert_data.source_ip, alert_data.hostname)
    isolated = await isolate(alert_data.hostname) if seen["noise"] else {"skipped": True}
    return {"intel": seen, "siem": searched, "isolation": isolated}
