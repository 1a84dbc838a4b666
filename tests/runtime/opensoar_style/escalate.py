"""Assign a critical alert and notify the SOC by Slack and email (OpenSOAR style).

Where OpenSOAR reads an integration's config from its database, the config
dict here is empty: kubesoar takes it from the Playbook's Secret."""

from opensoar import action, assign_current_alert, playbook


@action(name="notify", timeout=15, retries=1)
async def notify(title: str, severity: str, assignee: str) -> dict:
    from opensoar.integrations.email.connector import EmailIntegration
    from opensoar.integrations.slack.connector import SlackIntegration

    slack = SlackIntegration({})
    await slack.connect()
    try:
        sent = await slack.send_message(channel="#soc", text=f"[{severity}] {title} -> {assignee}")
    finally:
        await slack.disconnect()
    mail = EmailIntegration({})
    mailed = await mail.send_email(
        "soc@example.org", f"[{severity}] {title}", f"Assigned to {assignee}"
    )
    return {"slack": sent, "email": mailed}


@playbook(trigger="webhook", conditions={"severity": ["critical"]}, order=30)
async def escalate(alert_data):
    if isinstance(alert_data, dict):
        title, severity = alert_data.get("title", "Unknown"), alert_data.get("severity")
    elif hasattr(alert_data, "id"):
        title, severity = alert_data.title, alert_data.severity
    else:
        return {"escalated": False}
    assignment = await assign_current_alert(username="oncall")
    notified = await notify(title, severity, assignment["assigned_username"])
    return {
        "escalated": True,
        "assigned": assignment["assigned_username"],
        "status": alert_data.status,
        "notified": notified,
    }
