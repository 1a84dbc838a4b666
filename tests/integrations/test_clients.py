"""Each integration client against the local fake of its vendor's API: the
path and auth the vendor documents, the answer shape, the action attempt it
records on the run, and a wrong credential failing without showing it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fakevendors import DEFENDER_TOKEN, KEYS, FakeVendors
from kubesoar._context import RunContext
from kubesoar.integrations import (
    AbuseIPDB,
    Defender,
    Elastic,
    GreyNoise,
    IntegrationHTTPError,
    LLMClient,
    Shodan,
    Slack,
    Splunk,
    VirusTotal,
)

T = TypeVar("T")


async def in_run(secrets: Path, call: Callable[[], Awaitable[T]]) -> tuple[T, list[dict[str, Any]]]:
    """Await `call()` inside a run (its secrets, its HTTP client); returns the
    answer and the action attempts the run recorded."""
    ctx = RunContext(run_id="r1", correlation_id="c1", secrets_dir=secrets)
    token = ctx.activate()
    try:
        answer = await call()
    finally:
        ctx.deactivate(token)
        await ctx.aclose()
    return answer, ctx.attempts


async def test_virustotal_reports_ip_domain_hash_and_url(
    vendors: FakeVendors, secrets_dir: Path
) -> None:
    vt = VirusTotal()

    async def lookups() -> list[dict[str, Any]]:
        return [
            await vt.lookup_ip("203.0.113.7"),
            await vt.lookup_domain("evil.example"),
            await vt.lookup_hash("44d88612fea8a8f36de82e1278abb02f"),
        ]

    answers, attempts = await in_run(secrets_dir, lookups)
    assert answers[0]["data"]["attributes"]["last_analysis_stats"]["malicious"] == 7
    assert answers[0]["data"]["attributes"]["as_owner"] == "Bad Hosting BV"
    assert answers[1]["data"]["attributes"]["registrar"] == "NameCheap"
    assert answers[2]["data"]["attributes"]["meaningful_name"] == "invoice.exe"
    paths = [r.path for r in vendors.under("vt")]
    assert paths == [
        "/vt/api/v3/ip_addresses/203.0.113.7",
        "/vt/api/v3/domains/evil.example",
        "/vt/api/v3/files/44d88612fea8a8f36de82e1278abb02f",
    ]
    assert {r.headers["x-apikey"] for r in vendors.under("vt")} == {KEYS["virustotal"]}
    assert [(a["action"], a["status"]) for a in attempts] == [
        ("virustotal.lookup_ip", "succeeded"),
        ("virustotal.lookup_domain", "succeeded"),
        ("virustotal.lookup_hash", "succeeded"),
    ]


async def test_virustotal_url_id_is_unpadded_urlsafe_base64(
    vendors: FakeVendors, secrets_dir: Path
) -> None:
    with pytest.raises(IntegrationHTTPError) as caught:
        await in_run(secrets_dir, lambda: VirusTotal().lookup_url("http://a.example/?x=1"))
    assert caught.value.status == 404  # the fake decoded the id and did not know the URL
    assert vendors.under("vt")[0].path == "/vt/api/v3/urls/aHR0cDovL2EuZXhhbXBsZS8_eD0x"


async def test_a_wrong_key_fails_without_showing_it(vendors: FakeVendors, tmp_path: Path) -> None:
    wrong = "wrong-key-abcdef123456"
    vt = VirusTotal({"api_key": wrong, "base_url": vendors.url("vt/api/v3")})
    with pytest.raises(IntegrationHTTPError) as caught:
        await in_run(tmp_path, lambda: vt.lookup_ip("203.0.113.7"))
    assert caught.value.status == 401
    assert "WrongCredentialsError" in str(caught.value)
    assert wrong not in str(caught.value)
    shodan = Shodan({"api_key": wrong, "base_url": vendors.url("shodan")})
    with pytest.raises(IntegrationHTTPError) as caught_shodan:
        await in_run(tmp_path, lambda: shodan.host_info("203.0.113.7"))
    assert wrong not in str(caught_shodan.value)  # the key travels in the query string
    assert vendors.under("shodan")[0].query["key"] == wrong


async def test_abuseipdb_check(vendors: FakeVendors, secrets_dir: Path) -> None:
    answer, attempts = await in_run(secrets_dir, lambda: AbuseIPDB().check_ip("203.0.113.7", 30))
    assert answer["data"]["abuseConfidenceScore"] == 97
    assert answer["data"]["totalReports"] == 412
    request = vendors.under("abuseipdb")[0]
    assert request.path == "/abuseipdb/api/v2/check"
    assert request.query == {"ipAddress": "203.0.113.7", "maxAgeInDays": "30"}
    assert request.headers["Key"] == KEYS["abuseipdb"]
    assert attempts[0]["action"] == "abuseipdb.check_ip"


async def test_greynoise_quick_context_riot_gnql(vendors: FakeVendors, secrets_dir: Path) -> None:
    gn = GreyNoise()

    async def calls() -> list[dict[str, Any]]:
        return [
            await gn.quick_lookup("203.0.113.7"),
            await gn.context("203.0.113.7"),
            await gn.riot("203.0.113.7"),
            await gn.gnql("classification:malicious"),
        ]

    answers, attempts = await in_run(secrets_dir, calls)
    assert answers[0]["noise"] is True and answers[1]["classification"] == "malicious"
    assert answers[2]["riot"] is False and answers[3]["count"] == 1
    assert [r.path for r in vendors.under("greynoise")] == [
        "/greynoise/v2/noise/quick/203.0.113.7",
        "/greynoise/v2/noise/context/203.0.113.7",
        "/greynoise/v2/riot/203.0.113.7",
        "/greynoise/v2/experimental/gnql",
    ]
    assert {r.headers["key"] for r in vendors.under("greynoise")} == {KEYS["greynoise"]}
    assert [a["action"] for a in attempts] == [
        "greynoise.quick_lookup",
        "greynoise.context",
        "greynoise.riot",
        "greynoise.gnql",
    ]


async def test_shodan_host_search_and_dns(vendors: FakeVendors, secrets_dir: Path) -> None:
    shodan = Shodan()

    async def calls() -> list[Any]:
        return [
            await shodan.host_info("203.0.113.7"),
            await shodan.search("org:Bad"),
            await shodan.dns_resolve("evil.example"),
            await shodan.dns_reverse("203.0.113.7"),
            await shodan.api_info(),
        ]

    answers, _ = await in_run(secrets_dir, calls)
    assert answers[0]["ports"] == [22, 443]
    assert answers[1]["total"] == 1
    assert answers[2] == {"evil.example": "203.0.113.7"}
    assert answers[3] == {"203.0.113.7": ["evil.example"]}
    assert answers[4]["plan"] == "dev"
    assert {r.query["key"] for r in vendors.under("shodan")} == {KEYS["shodan"]}
    assert vendors.under("shodan")[2].query["hostnames"] == "evil.example"


async def test_slack_webhook_and_web_api(
    vendors: FakeVendors, secrets_dir: Path, tmp_path: Path
) -> None:
    answer, attempts = await in_run(secrets_dir, lambda: Slack().send_message("#soc", "hello"))
    assert answer == {"status": 200, "ok": True}
    assert vendors.sent_messages[-1] == {"text": "hello"}
    bot = Slack({"bot_token": KEYS["slack_bot"], "base_url": vendors.url("slack/api")})
    empty = tmp_path / "no-secrets"  # no Slack Secret: the config's bot token is all there is
    answer, _ = await in_run(empty, lambda: bot.send_message("#soc", "via bot"))
    assert answer["ok"] is True and answer["channel"] == "#soc"
    assert vendors.sent_messages[-1]["channel"] == "#soc"
    assert attempts[0]["action"] == "slack.send_message"
    assert KEYS["slack_hook"] not in str(attempts)


async def test_splunk_search_indexes_and_notable(
    vendors: FakeVendors, secrets_dir: Path, tmp_path: Path
) -> None:
    splunk = Splunk()

    async def calls() -> list[Any]:
        return [
            await splunk.run_search("index=main src_ip=203.0.113.7", earliest="-24h"),
            await splunk.list_indexes(),
            await splunk.create_notable_event("Brute force", "many failures", "high"),
        ]

    answers, attempts = await in_run(secrets_dir, calls)
    assert answers[0] == {
        "sid": "1700000000.42",
        "results": [{"src_ip": "203.0.113.7", "count": "12"}],
    }
    assert answers[1] == [{"name": "main", "content": {"totalEventCount": 10}}]
    assert answers[2]["success"] is True
    dispatch = vendors.under("splunk")[0]
    assert b"search=search+index%3Dmain" in dispatch.body and b"earliest_time=-24h" in dispatch.body
    assert dispatch.headers["Authorization"] == f"Bearer {KEYS['splunk']}"
    assert attempts[0]["action"] == "splunk.run_search"
    basic = Splunk({"url": vendors.url("splunk"), "username": "admin", "password": "changeme-0123"})
    indexes, _ = await in_run(tmp_path / "no-secrets", basic.list_indexes)
    assert indexes[0]["name"] == "main"


async def test_elastic_alerts_isolation_and_case(vendors: FakeVendors, secrets_dir: Path) -> None:
    elastic = Elastic()

    async def calls() -> list[Any]:
        return [
            await elastic.get_alerts({"term": {"host.name": "ws-042"}}, size=5),
            await elastic.isolate_host("agent-7"),
            await elastic.create_case("Phish", "details"),
        ]

    answers, _ = await in_run(secrets_dir, calls)
    assert answers[0]["hits"]["total"]["value"] == 1
    assert answers[1]["data"]["agents"] == ["agent-7"]
    assert answers[2]["id"] == "case-1"
    requests = vendors.under("elastic")
    assert {r.headers["Authorization"] for r in requests} == {f"ApiKey {KEYS['elastic']}"}
    assert all("kbn-xsrf" in r.headers for r in requests)


async def test_defender_token_once_then_actions(vendors: FakeVendors, secrets_dir: Path) -> None:
    defender = Defender()

    async def calls() -> list[Any]:
        return [
            await defender.list_alerts("severity eq 'High'", top=5),
            await defender.isolate_machine("m1", "contain"),
            await defender.run_antivirus_scan("m1"),
            await defender.list_machines(),
        ]

    answers, attempts = await in_run(secrets_dir, calls)
    assert answers[0][0]["filter"] == "severity eq 'High'"
    assert answers[1]["type"] == "Isolate" and answers[1]["requestorComment"] == "contain"
    assert answers[2]["type"] == "RunAntiVirusScan"
    assert answers[3] == [{"id": "m1", "computerDnsName": "ws-042"}]
    assert [r.path for r in vendors.requests].count("/login/tenant-1/oauth2/v2.0/token") == 1
    assert vendors.under("defender")[0].query == {"$filter": "severity eq 'High'", "$top": "5"}
    assert DEFENDER_TOKEN not in str(attempts) and KEYS["defender_secret"] not in str(attempts)


@pytest.mark.parametrize(
    ("provider", "model", "path"),
    [
        ("openai", "gpt-4o", "/openai/v1/chat/completions"),
        ("anthropic", "claude-sonnet-4-6", "/anthropic/v1/messages"),
        ("ollama", "llama3", "/ollama/api/generate"),
    ],
)
async def test_llm_client_per_provider(
    vendors: FakeVendors, secrets_dir: Path, provider: str, model: str, path: str
) -> None:
    client = LLMClient(provider=provider, model=model)  # key and endpoint from the Secret
    answer, attempts = await in_run(
        secrets_dir,
        lambda: client.complete("hi", system="be brief", max_tokens=64, temperature=0.1),
    )
    assert answer.content == vendors.llm_text
    assert answer.model.startswith(model)
    assert answer.usage
    assert vendors.requests[-1].path == path
    assert attempts[0]["action"] == f"llm.{provider}"


async def test_llm_client_errors_as_opensoar(vendors: FakeVendors, tmp_path: Path) -> None:
    client = LLMClient(
        "openai", "gpt-4o", api_key="sk-wrong-abcdef", base_url=vendors.url("openai")
    )
    with pytest.raises(RuntimeError) as caught:
        await in_run(tmp_path, lambda: client.complete("hi"))
    assert "401" in str(caught.value) and "sk-wrong-abcdef" not in str(caught.value)
    with pytest.raises(ValueError, match="Unknown LLM provider: mistral"):
        await LLMClient("mistral", "m").complete("hi")


async def test_missing_credentials_name_the_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Secret 'virustotal' with key 'api_key'"):
        await in_run(tmp_path, lambda: VirusTotal().lookup_ip("203.0.113.7"))


async def test_health_checks_and_action_lists(vendors: FakeVendors, secrets_dir: Path) -> None:
    from kubesoar.integrations import Email

    async def checks() -> list[Any]:
        return [
            await VirusTotal().health_check(),
            await VirusTotal({"api_key": "wrong-0000000000"}).health_check(),
            await Splunk().health_check(),
            await Elastic().health_check(),
            await Slack().health_check(),
        ]

    vt_ok, vt_bad, splunk, elastic, slack = (await in_run(secrets_dir, checks))[0]
    assert vt_ok.healthy and not vt_bad.healthy and "401" in vt_bad.message
    assert splunk.details == {"version": "9.2.0"} and elastic.details == {"version": "8.14.0"}
    assert slack.message == "Webhook configured (cannot verify)"
    assert [a.name for a in VirusTotal().get_actions()] == [
        "lookup_ip",
        "lookup_hash",
        "lookup_domain",
    ]
    assert [a.name for a in Email().get_actions()] == ["send_email"]
    assert len(Defender().get_actions()) == 7
