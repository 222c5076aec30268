"""The notification routes (docs/api.md "Notifications", docs/crm.md "Notifications"): a
user's own notifications, unread first, and marking one read; and :func:`deliver`, one
round of the delivery loop app/ runs.

Theory of operation: a notification is a row for one user (crm/notifications.py). The
loop copies new sources into rows, pushes each undelivered row on the event stream to its
user only (:meth:`web.hub.EventHub.notify`) and marks it delivered; a user who was not
connected finds it in ``GET /api/notifications`` when they come back. Nobody reads or marks
another user's notifications, whatever their role: an id that is not yours is a 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from crm.notifications import NotificationStore
from web.api import ApiError, PageNo, PerPage, Who, page
from web.hub import EventHub
from web.services import Services

__all__ = ["build_notifications_router", "deliver"]


async def deliver(notes: NotificationStore, hub: EventHub, now: datetime) -> int:
    """One round of the delivery loop: collect new notifications, push the undelivered
    ones to their users and mark them delivered; how many were pushed."""
    await notes.collect(now)
    pending = await notes.undelivered()
    for n in pending:
        hub.notify(n.user, {"notification": n.as_dict()})
    await notes.mark_delivered([n.id for n in pending if n.id is not None], now)
    return len(pending)


def build_notifications_router(s: Services) -> APIRouter:
    router = APIRouter()

    def store() -> NotificationStore:
        return NotificationStore(s.store.engine)

    @router.get("/api/notifications", tags=["notifications"])
    async def notifications(
        p: Who, unread: bool = False, page_no: PageNo = 1, per_page: PerPage = 50
    ) -> dict[str, Any]:
        rows, total, unread_count = await store().for_user(
            p.name, unread_only=unread, offset=(page_no - 1) * per_page, limit=per_page
        )
        out = page([n.as_dict() for n in rows], total, page_no, per_page)
        out["unread"] = unread_count
        return out

    @router.post("/api/notifications/{notification_id}/read", tags=["notifications"])
    async def mark_read(p: Who, notification_id: int) -> dict[str, Any]:
        if not await store().mark_read(p.name, notification_id, datetime.now(UTC)):
            raise ApiError(404, f"no notification {notification_id}")
        return {"id": notification_id, "read": True}

    return router
