"""One local HTTP server (aiohttp, 127.0.0.1) that answers as the vendors'
documented APIs do, under a path prefix per vendor:

    /vt/api/v3/...          VirusTotal v3     x-apikey header
    /abuseipdb/api/v2/check AbuseIPDB v2      Key header
    /greynoise/v2/...       GreyNoise         key header
    /shodan/...             Shodan            ?key= query parameter
    /slack/hook/<token>     Slack webhook     (the URL is the secret)
    /slack/api/...          Slack Web API     Authorization: Bearer
    /splunk/services/...    Splunk REST       Bearer or basic auth
    /elastic/api/...        Kibana            Authorization: ApiKey, kbn-xsrf on writes
    /login/<tenant>/oauth2/v2.0/token   Entra ID client credentials
    /defender/api/...       Defender for Endpoint   Bearer (the issued token)
    /openai/v1/chat/completions, /anthropic/v1/messages, /ollama/api/generate

A wrong credential gets the vendor's 401/403 answer. `fail_next(prefix, n,
status, retry_after)` makes the next `n` requests under a prefix fail (429
with `Retry-After`, or 5xx). Every request is recorded (`requests`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

KEYS = {
    "virustotal": "vt-key-0123456789",
    "abuseipdb": "abuse-key-0123456789",
    "greynoise": "gn-key-0123456789",
    "shodan": "shodan-key-0123456789",
    "slack_bot": "xoxb-bot-0123456789",
    "slack_hook": "T000-B000-hooksecret0123",
    "splunk": "splunk-token-0123456789",
    "elastic": "elastic-apikey-0123456789",
    "defender_secret": "defender-client-secret-0123",
    "openai": "sk-openai-0123456789",
    "anthropic": "sk-ant-0123456789",
}
DEFENDER_TOKEN = "defender-access-token-0123"

# Reputation data the fakes serve (VirusTotal-shaped stats per indicator).
VT_STATS = {
    "203.0.113.7": {"malicious": 7, "suspicious": 1, "undetected": 60, "harmless": 20},
    "198.51.100.2": {"malicious": 0, "suspicious": 0, "undetected": 70, "harmless": 18},
    "evil.example": {"malicious": 12, "suspicious": 2, "undetected": 50, "harmless": 10},
    "44d88612fea8a8f36de82e1278abb02f": {"malicious": 60, "suspicious": 0, "undetected": 5},
}
ABUSE_SCORES = {
    "203.0.113.7": (97, 412, "NL", "Bad Hosting BV"),
    "198.51.100.2": (0, 0, "US", "Ok"),
}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeVendors:
    base: str = ""
    requests: list[Recorded] = field(default_factory=list)
    llm_text: str = '{"verdict": "benign", "confidence": 0.9}'
    failures: dict[str, list[tuple[int, str | None]]] = field(default_factory=dict)
    sent_messages: list[dict[str, Any]] = field(default_factory=list)

    def url(self, prefix: str) -> str:
        return f"{self.base}/{prefix}"

    def fail_next(self, prefix: str, count: int, status: int = 429, retry_after: str | None = None):
        self.failures.setdefault(prefix, []).extend([(status, retry_after)] * count)

    def under(self, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(f"/{prefix}/")]

    # ----- the app ----------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_and_fail])
        get, post = web.get, web.post
        app.add_routes(
            [
                get("/vt/api/v3/ip_addresses/{value}", self.vt_object),
                get("/vt/api/v3/domains/{value}", self.vt_object),
                get("/vt/api/v3/files/{value}", self.vt_object),
                get("/vt/api/v3/urls/{value}", self.vt_object),
                get("/vt/api/v3/users/me", self.vt_me),
                get("/abuseipdb/api/v2/check", self.abuse_check),
                get("/greynoise/v2/noise/quick/{ip}", self.gn_quick),
                get("/greynoise/v2/noise/context/{ip}", self.gn_context),
                get("/greynoise/v2/riot/{ip}", self.gn_riot),
                get("/greynoise/v2/experimental/gnql", self.gn_gnql),
                get("/shodan/shodan/host/search", self.shodan_search),
                get("/shodan/shodan/host/{ip}", self.shodan_host),
                get("/shodan/dns/resolve", self.shodan_resolve),
                get("/shodan/dns/reverse", self.shodan_reverse),
                get("/shodan/api-info", self.shodan_info),
                get("/shodan/account/profile", self.shodan_info),
                post("/slack/hook/{token}", self.slack_hook),
                post("/slack/api/chat.postMessage", self.slack_post),
                post("/slack/api/auth.test", self.slack_auth_test),
                post("/splunk/services/search/jobs", self.splunk_dispatch),
                get("/splunk/services/search/jobs/{sid}", self.splunk_job),
                get("/splunk/services/search/jobs/{sid}/results", self.splunk_results),
                get("/splunk/services/data/indexes", self.splunk_indexes),
                post("/splunk/services/notable_update", self.splunk_notable),
                get("/splunk/services/server/info", self.splunk_info),
                post("/elastic/api/detection_engine/signals/search", self.elastic_search),
                post("/elastic/api/endpoint/action/isolate", self.elastic_isolate),
                post("/elastic/api/cases", self.elastic_case),
                get("/elastic/api/status", self.elastic_status),
                post("/login/{tenant}/oauth2/v2.0/token", self.entra_token),
                get("/defender/api/alerts", self.defender_alerts),
                get("/defender/api/alerts/{id}", self.defender_alert),
                get("/defender/api/machines", self.defender_machines),
                post("/defender/api/machines/{id}/isolate", self.defender_machine_action),
                post("/defender/api/machines/{id}/unisolate", self.defender_machine_action),
                post("/defender/api/machines/{id}/runAntiVirusScan", self.defender_machine_action),
                get("/defender/api/indicators", self.defender_indicators),
                post("/openai/v1/chat/completions", self.openai_chat),
                post("/anthropic/v1/messages", self.anthropic_messages),
                post("/ollama/api/generate", self.ollama_generate),
            ]
        )
        return app

    @web.middleware
    async def _record_and_fail(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        prefix = request.path.split("/")[1]
        pending = self.failures.get(prefix)
        if pending:
            status, retry_after = pending.pop(0)
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return web.json_response(
                {
                    "error": {
                        "code": "QuotaExceededError" if status == 429 else "ServerError",
                        "message": "try later",
                    }
                },
                status=status,
                headers=headers,
            )
        return await handler(request)

    # ----- VirusTotal -------------------------------------------------------

    async def vt_object(self, request: web.Request) -> web.Response:
        if request.headers.get("x-apikey") != KEYS["virustotal"]:
            return web.json_response(
                {"error": {"code": "WrongCredentialsError", "message": "Wrong API key"}}, status=401
            )
        value = request.match_info["value"]
        kind = request.path.split("/")[4]
        if kind == "urls":
            value = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        stats = VT_STATS.get(value)
        if stats is None:
            return web.json_response(
                {"error": {"code": "NotFoundError", "message": f"{value} not found"}}, status=404
            )
        attributes: dict[str, Any] = {"last_analysis_stats": stats}
        if kind == "ip_addresses":
            attributes.update(country="NL", as_owner="Bad Hosting BV")
        elif kind == "domains":
            attributes.update(
                registrar="NameCheap",
                creation_date=1700000000,
                categories={"Forcepoint": "phishing"},
            )
        elif kind == "files":
            attributes.update(
                type_description="Win32 EXE",
                meaningful_name="invoice.exe",
                popular_threat_label="trojan.emotet",
                first_submission_date=1600000000,
            )
        types = {"ip_addresses": "ip_address", "domains": "domain", "files": "file", "urls": "url"}
        return web.json_response(
            {"data": {"id": value, "type": types[kind], "attributes": attributes}}
        )

    async def vt_me(self, request: web.Request) -> web.Response:
        if request.headers.get("x-apikey") != KEYS["virustotal"]:
            return web.json_response({"error": {"code": "WrongCredentialsError"}}, status=401)
        return web.json_response({"data": {"id": "me", "type": "user"}})

    # ----- AbuseIPDB --------------------------------------------------------

    async def abuse_check(self, request: web.Request) -> web.Response:
        if request.headers.get("Key") != KEYS["abuseipdb"]:
            return web.json_response(
                {"errors": [{"detail": "Authentication failed.", "status": 401}]}, status=401
            )
        ip = request.query.get("ipAddress", "")
        score, reports, country, isp = ABUSE_SCORES.get(ip, (0, 0, None, None))
        return web.json_response(
            {
                "data": {
                    "ipAddress": ip,
                    "isPublic": True,
                    "abuseConfidenceScore": score,
                    "countryCode": country,
                    "isp": isp,
                    "totalReports": reports,
                    "maxAgeInDays": int(request.query.get("maxAgeInDays", "30")),
                }
            }
        )

    # ----- GreyNoise --------------------------------------------------------

    def _gn_denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("key") != KEYS["greynoise"]:
            return web.json_response({"message": "invalid API key"}, status=401)
        return None

    async def gn_quick(self, request: web.Request) -> web.Response:
        ip = request.match_info["ip"]
        return self._gn_denied(request) or web.json_response(
            {"ip": ip, "noise": ip == "203.0.113.7", "riot": False, "code": "0x01"}
        )

    async def gn_context(self, request: web.Request) -> web.Response:
        ip = request.match_info["ip"]
        return self._gn_denied(request) or web.json_response(
            {"ip": ip, "seen": True, "classification": "malicious", "tags": ["SSH Bruteforcer"]}
        )

    async def gn_riot(self, request: web.Request) -> web.Response:
        ip = request.match_info["ip"]
        return self._gn_denied(request) or web.json_response({"ip": ip, "riot": False})

    async def gn_gnql(self, request: web.Request) -> web.Response:
        return self._gn_denied(request) or web.json_response(
            {"query": request.query.get("query"), "count": 1, "data": [{"ip": "203.0.113.7"}]}
        )

    # ----- Shodan -----------------------------------------------------------

    def _shodan_denied(self, request: web.Request) -> web.Response | None:
        if request.query.get("key") != KEYS["shodan"]:
            return web.json_response({"error": "Invalid API key"}, status=401)
        return None

    async def shodan_host(self, request: web.Request) -> web.Response:
        ip = request.match_info["ip"]
        return self._shodan_denied(request) or web.json_response(
            {"ip_str": ip, "ports": [22, 443], "org": "Bad Hosting BV", "country_code": "NL"}
        )

    async def shodan_search(self, request: web.Request) -> web.Response:
        return self._shodan_denied(request) or web.json_response(
            {"matches": [{"ip_str": "203.0.113.7"}], "total": 1}
        )

    async def shodan_resolve(self, request: web.Request) -> web.Response:
        names = request.query.get("hostnames", "").split(",")
        return self._shodan_denied(request) or web.json_response({n: "203.0.113.7" for n in names})

    async def shodan_reverse(self, request: web.Request) -> web.Response:
        ips = request.query.get("ips", "").split(",")
        return self._shodan_denied(request) or web.json_response({i: ["evil.example"] for i in ips})

    async def shodan_info(self, request: web.Request) -> web.Response:
        return self._shodan_denied(request) or web.json_response(
            {"plan": "dev", "query_credits": 99}
        )

    # ----- Slack ------------------------------------------------------------

    async def slack_hook(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != KEYS["slack_hook"]:
            return web.Response(status=403, text="invalid_token")
        self.sent_messages.append(await request.json())
        return web.Response(text="ok")

    async def slack_post(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {KEYS['slack_bot']}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        message = await request.json()
        self.sent_messages.append(message)
        return web.json_response(
            {
                "ok": True,
                "channel": message.get("channel"),
                "ts": "1700000000.000100",
                "message": {"text": message.get("text"), "type": "message"},
            }
        )

    async def slack_auth_test(self, request: web.Request) -> web.Response:
        ok = request.headers.get("Authorization") == f"Bearer {KEYS['slack_bot']}"
        return web.json_response({"ok": ok} if ok else {"ok": False, "error": "invalid_auth"})

    # ----- Splunk -----------------------------------------------------------

    def _splunk_denied(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        basic = "Basic " + base64.b64encode(b"admin:changeme-0123").decode()
        if auth not in {f"Bearer {KEYS['splunk']}", basic}:
            return web.json_response(
                {"messages": [{"type": "WARN", "text": "Unauthorized"}]}, status=401
            )
        return None

    async def splunk_dispatch(self, request: web.Request) -> web.Response:
        denied = self._splunk_denied(request)
        if denied:
            return denied
        form = await request.post()
        if not str(form.get("search", "")).startswith("search "):
            return web.json_response({"messages": [{"type": "FATAL", "text": "bad"}]}, status=400)
        return web.json_response({"sid": "1700000000.42"}, status=201)

    async def splunk_job(self, request: web.Request) -> web.Response:
        return self._splunk_denied(request) or web.json_response(
            {
                "entry": [
                    {
                        "name": request.match_info["sid"],
                        "content": {"isDone": True, "dispatchState": "DONE"},
                    }
                ]
            }
        )

    async def splunk_results(self, request: web.Request) -> web.Response:
        return self._splunk_denied(request) or web.json_response(
            {"results": [{"src_ip": "203.0.113.7", "count": "12"}]}
        )

    async def splunk_indexes(self, request: web.Request) -> web.Response:
        return self._splunk_denied(request) or web.json_response(
            {"entry": [{"name": "main", "content": {"totalEventCount": 10}}]}
        )

    async def splunk_notable(self, request: web.Request) -> web.Response:
        return self._splunk_denied(request) or web.json_response({"success": True, "message": "1"})

    async def splunk_info(self, request: web.Request) -> web.Response:
        return self._splunk_denied(request) or web.json_response(
            {"entry": [{"content": {"version": "9.2.0"}}]}
        )

    # ----- Elastic ----------------------------------------------------------

    def _elastic_denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"ApiKey {KEYS['elastic']}":
            return web.json_response({"statusCode": 401, "error": "Unauthorized"}, status=401)
        if request.method == "POST" and "kbn-xsrf" not in request.headers:
            return web.json_response({"statusCode": 400, "message": "missing kbn-xsrf"}, status=400)
        return None

    async def elastic_search(self, request: web.Request) -> web.Response:
        return self._elastic_denied(request) or web.json_response(
            {
                "hits": {
                    "total": {"value": 1},
                    "hits": [{"_id": "sig-1", "_source": {"kibana.alert.rule.name": "x"}}],
                }
            }
        )

    async def elastic_isolate(self, request: web.Request) -> web.Response:
        denied = self._elastic_denied(request)
        if denied:
            return denied
        body = await request.json()
        return web.json_response(
            {"action": "isolate-1", "data": {"agents": body["endpoint_ids"], "command": "isolate"}}
        )

    async def elastic_case(self, request: web.Request) -> web.Response:
        denied = self._elastic_denied(request)
        if denied:
            return denied
        body = await request.json()
        return web.json_response({"id": "case-1", "title": body["title"], "status": "open"})

    async def elastic_status(self, request: web.Request) -> web.Response:
        return self._elastic_denied(request) or web.json_response({"version": {"number": "8.14.0"}})

    # ----- Entra ID + Defender ----------------------------------------------

    async def entra_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials" or (
            form.get("client_secret") != KEYS["defender_secret"]
        ):
            return web.json_response(
                {"error": "invalid_client", "error_description": "AADSTS7000215"}, status=401
            )
        return web.json_response(
            {"token_type": "Bearer", "expires_in": 3599, "access_token": DEFENDER_TOKEN}
        )

    def _defender_denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {DEFENDER_TOKEN}":
            return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        return None

    async def defender_alerts(self, request: web.Request) -> web.Response:
        return self._defender_denied(request) or web.json_response(
            {"value": [{"id": "da1", "severity": "High", "filter": request.query.get("$filter")}]}
        )

    async def defender_alert(self, request: web.Request) -> web.Response:
        return self._defender_denied(request) or web.json_response(
            {"id": request.match_info["id"], "severity": "High", "status": "New"}
        )

    async def defender_machines(self, request: web.Request) -> web.Response:
        return self._defender_denied(request) or web.json_response(
            {"value": [{"id": "m1", "computerDnsName": "ws-042"}]}
        )

    async def defender_indicators(self, request: web.Request) -> web.Response:
        return self._defender_denied(request) or web.json_response({"value": []})

    async def defender_machine_action(self, request: web.Request) -> web.Response:
        denied = self._defender_denied(request)
        if denied:
            return denied
        body = await request.json()
        kind = request.path.rsplit("/", 1)[1]
        names = {
            "isolate": "Isolate",
            "unisolate": "Unisolate",
            "runAntiVirusScan": "RunAntiVirusScan",
        }
        return web.json_response(
            {
                "id": "ma-1",
                "type": names[kind],
                "status": "Pending",
                "machineId": request.match_info["id"],
                "requestorComment": body.get("Comment"),
            },
            status=201,
        )

    # ----- LLMs -------------------------------------------------------------

    async def openai_chat(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {KEYS['openai']}":
            return web.json_response({"error": {"message": "Incorrect API key"}}, status=401)
        body = await request.json()
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"] + "-2024",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": self.llm_text},
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    async def anthropic_messages(self, request: web.Request) -> web.Response:
        if request.headers.get("x-api-key") != KEYS["anthropic"] or not request.headers.get(
            "anthropic-version"
        ):
            return web.json_response(
                {"type": "error", "error": {"type": "authentication_error"}}, status=401
            )
        body = await request.json()
        return web.json_response(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": self.llm_text}],
                "usage": {"input_tokens": 10, "output_tokens": 5},
            }
        )

    async def ollama_generate(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {
                "model": body["model"],
                "response": self.llm_text,
                "done": True,
                "prompt_eval_count": 10,
                "eval_count": 5,
            }
        )


async def start(vendors: FakeVendors) -> web.AppRunner:
    runner = web.AppRunner(vendors.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    vendors.base = f"http://127.0.0.1:{port}"
    return runner


def write_secrets(folder: Any, vendors: FakeVendors, *, per_minute: str = "600") -> None:
    """A secrets folder (`<name>/<key>` files) pointing every integration at the fakes."""
    from pathlib import Path

    layout = {
        "virustotal": {
            "api_key": KEYS["virustotal"],
            "base_url": vendors.url("vt/api/v3"),
            "requests_per_minute": per_minute,
        },
        "abuseipdb": {"api_key": KEYS["abuseipdb"], "base_url": vendors.url("abuseipdb/api/v2")},
        "greynoise": {"api_key": KEYS["greynoise"], "base_url": vendors.url("greynoise")},
        "shodan": {"api_key": KEYS["shodan"], "base_url": vendors.url("shodan")},
        "slack": {
            "webhook_url": vendors.url(f"slack/hook/{KEYS['slack_hook']}"),
            "base_url": vendors.url("slack/api"),
        },
        "splunk": {"url": vendors.url("splunk"), "token": KEYS["splunk"]},
        "elastic": {"url": vendors.url("elastic"), "api_key": KEYS["elastic"]},
        "msdefender": {
            "tenant_id": "tenant-1",
            "client_id": "client-1",
            "client_secret": KEYS["defender_secret"],
            "login_url": vendors.url("login"),
            "base_url": vendors.url("defender"),
        },
        "openai": {"api_key": KEYS["openai"], "base_url": vendors.url("openai")},
        "anthropic": {"api_key": KEYS["anthropic"], "base_url": vendors.url("anthropic")},
        "ollama": {"url": vendors.url("ollama")},
    }
    root = Path(folder)
    for name, keys in layout.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for key, value in keys.items():
            (root / name / key).write_text(value + "\n")
