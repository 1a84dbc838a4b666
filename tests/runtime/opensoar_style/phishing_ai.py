"""Ask an LLM for a verdict, then close or escalate the alert (OpenSOAR style)."""

import json

from opensoar import (
    action,
    add_current_alert_comment,
    get_current_alert_id,
    playbook,
    resolve_current_alert,
    update_current_alert,
)


@action(name="ai_verdict", timeout=60, retries=1)
async def ai_verdict(data: dict) -> dict:
    from opensoar.ai.client import LLMClient
    from opensoar.config import settings

    client = None
    if settings.anthropic_api_key:
        client = LLMClient(
            provider="anthropic",
            api_key=settings.anthropic_api_key,
            model=settings.llm_model or "claude-sonnet-4-6",
        )
    elif settings.openai_api_key:
        client = LLMClient(
            provider="openai", api_key=settings.openai_api_key, model=settings.llm_model or "gpt-4o"
        )
    elif settings.ollama_url:
        client = LLMClient(
            provider="ollama", base_url=settings.ollama_url, model=settings.llm_model or "llama3"
        )
    if client is None:
        return {"verdict": "unknown", "confidence": 0.0, "model": None}
    prompt = f"Title: {data.get('title')}\nIOCs: {json.dumps(data.get('iocs', {}))}"
    response = await client.complete(
        prompt, system="You triage phishing.", max_tokens=256, temperature=0.1
    )
    try:
        result = json.loads(response.content)
    except json.JSONDecodeError:
        result = {"verdict": "suspicious", "confidence": 0.5}
    result["model"] = response.model
    return result


@playbook(
    trigger="webhook", conditions={"tags": "phishing", "severity": ["high", "critical"]}, order=20
)
async def phishing_ai(alert_data):
    if hasattr(alert_data, "normalized"):
        data = alert_data.normalized or {}
        data["iocs"] = alert_data.iocs or {}
        data.setdefault("title", alert_data.title)
        data.setdefault("severity", alert_data.severity)
        data.setdefault("tags", alert_data.tags or [])
        alert_id = str(alert_data.id)
    elif isinstance(alert_data, dict):
        data = alert_data
        alert_id = data.get("id", "")
    else:
        return {"triaged": False}

    verdict = await ai_verdict(data)
    if verdict.get("verdict") == "benign" and verdict.get("confidence", 0) >= 0.85:
        changed = await resolve_current_alert(
            determination="benign", reason=verdict.get("reasoning", "AI")
        )
        outcome = {
            "action": "resolved",
            "status": changed["status"],
            "determination": changed["determination"],
        }
    else:
        changed = await update_current_alert(
            status="in_progress", determination=verdict.get("verdict", "unknown")
        )
        comment = await add_current_alert_comment(f"AI verdict: {verdict.get('verdict')}")
        outcome = {"action": "escalated", "status": changed["status"], "comment": comment["detail"]}
    return {
        "alert_id": alert_id,
        "bound_id": get_current_alert_id(),
        "severity": data["severity"],
        "verdict": verdict,
        "outcome": outcome,
    }
