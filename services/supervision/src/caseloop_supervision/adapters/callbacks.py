"""The source systems' callbacks: one POST per delivery attempt (at-least-once; the receiver
de-duplicates by the Idempotency-Key)."""

from __future__ import annotations

from uuid import UUID

import httpx

from caseloop_supervision.domain.feedback import AttemptOutcome

#: Enough of an error to tell what went wrong, not so much that one reply fills the log.
MAX_ERROR_LENGTH = 500


async def post_feedback(
    http: httpx.AsyncClient, url: str, *, delivery_id: UUID, event_type: str, body: str, attempt: int
) -> AttemptOutcome:
    """POST the stored JSON body; any status is an outcome, and so is any failure to get one."""
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": str(delivery_id),
        "X-Caseloop-Event-Type": event_type,
        "X-Caseloop-Delivery-Attempt": str(attempt),
    }
    try:
        response = await http.post(url, content=body.encode(), headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        # Timeouts, refused connections, bad URLs: the attempt failed and is retried like a 5xx.
        return AttemptOutcome(error=f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH])
    return AttemptOutcome(status_code=response.status_code)
