"""Human approval inside a run: `decision = await ctx.approval(title, details, ...)`.

A dispatched run (router and system of record) that asks for an approval is parked,
not held: the entry point unwinds (`ApprovalPending`), the pod reports the run as
`waiting` with the request and frees its worker. People approve or deny through the
runs API (`kubesoar approve|deny`, or `kubectl create --raw …/approval`), under their
own RBAC verb; the router writes the decision into the run's action journal, under
the call number of this `ctx.approval`, and queues the run again. It then runs from
the start on whichever pod gets it: the actions completed before are not executed
again (the journal returns their results, as on a redelivery) and this call returns
the recorded decision. Nobody deciding within `ttl_seconds` is a deny with reason
`Expired`.

A denied (or expired) approval raises `ApprovalDenied`: a playbook that does nothing
about it stops there and the run ends `denied`; one that wants a fallback catches it.
Outside a dispatched run (`kubesoar run`, a runtime without the router) nobody can
decide, so the call fails with `ApprovalUnavailable`; `kubesoar.testing.run_playbook`
takes the decisions a test wants (`approvals=`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from kubesoar._journal import ActionJournal
from kubesoar._jsonsafe import json_safe
from kubesoar.contracts import http

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "Approval",
    "ApprovalDenied",
    "ApprovalPending",
    "ApprovalUnavailable",
    "Approver",
    "always",
    "request_approval",
]

DEFAULT_TTL_SECONDS: Final = 3600.0
MAX_DETAILS_BYTES: Final = 16 * 1024
"""Details are for a person to read before deciding, not a data channel."""

# How a test (or another local runner) decides instead of people: given the request,
# True/False or a full decision.
Approver = Callable[[http.ApprovalRequest], Awaitable["bool | Approval"]]

Approval = http.ApprovalDecision
"""The decision: `approved`, `reason` (Approved, Denied, Expired), `decided_by`,
`comment`, `decided_at`."""


class ApprovalDenied(Exception):
    """The approval was denied, or expired undecided (`decision.reason == "Expired"`)."""

    __module__ = "kubesoar"  # as playbooks import it, and as run errors name it

    def __init__(self, title: str, decision: Approval) -> None:
        if decision.reason == "Expired":
            text = f"approval {title!r} expired undecided"
        else:
            text = f"approval {title!r} denied by {decision.decided_by or 'unknown'}"
            if decision.comment:
                text += f": {decision.comment}"
        super().__init__(text)
        self.title = title
        self.decision = decision


class ApprovalUnavailable(RuntimeError):
    """`ctx.approval` outside a run the router dispatched: nobody could decide."""

    __module__ = "kubesoar"


class ApprovalPending(BaseException):
    """Unwinds an entry point that waits for a decision. A BaseException, so that a
    playbook's `except Exception:` cannot swallow it and carry on unapproved."""

    def __init__(self, request: http.ApprovalRequest) -> None:
        super().__init__(f"waiting for approval {request.title!r}")
        self.request = request


def always(approved: bool, *, by: str) -> Approver:
    """An approver that decides every request the same way, as `by` (local runs, tests)."""
    decision = Approval(
        approved=approved, reason="Approved" if approved else "Denied", decided_by=by
    )

    async def decide(request: http.ApprovalRequest) -> Approval:
        return decision

    return decide


def _bounded_details(details: Any) -> Any:
    value = json_safe(details)
    if len(json.dumps(value, default=str)) > MAX_DETAILS_BYTES:
        raise ValueError(f"approval details must be at most {MAX_DETAILS_BYTES} bytes of JSON")
    return value


async def request_approval(
    title: str,
    details: Any,
    ttl_seconds: float,
    *,
    journal: ActionJournal | None,
    approver: Approver | None,
) -> Approval:
    """Decide `title`: from the journal (a resumed run), by `approver` (a test), or
    suspend the run (`ApprovalPending`). Raises ApprovalDenied when it was not approved."""
    if not isinstance(title, str) or not 1 <= len(title) <= 200:
        raise ValueError("an approval title is a string of 1-200 characters")
    if not 0 < ttl_seconds <= http.MAX_APPROVAL_TTL_SECONDS:
        raise ValueError(
            f"ttl_seconds must be more than 0 and at most {http.MAX_APPROVAL_TTL_SECONDS}"
        )
    seq = journal.next_seq() if journal is not None else 0
    request = http.ApprovalRequest(
        seq=seq, title=title, details=_bounded_details(details), ttl_seconds=ttl_seconds
    )
    decision: Approval
    if journal is not None:
        recorded = journal.replay(seq, http.APPROVAL_ACTION)
        if recorded is None:
            raise ApprovalPending(request)
        decision = Approval.model_validate(recorded.result)
    elif approver is not None:
        given = await approver(request)
        decision = (
            given
            if isinstance(given, Approval)
            else Approval(
                approved=bool(given), reason="Approved" if given else "Denied", decided_by="test"
            )
        )
    else:
        raise ApprovalUnavailable(
            f"approval {title!r} needs a run the router dispatched from its system of record"
            " (people decide through the runs API); locally, `kubesoar run --approvals"
            " approve|deny`; in tests, run_playbook(..., approvals=...)"
        )
    if not decision.approved:
        raise ApprovalDenied(title, decision)
    return decision
