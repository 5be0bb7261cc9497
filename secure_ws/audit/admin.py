"""The audit log in the Django admin: who is connected, who was refused and why, and act.

Rows are written by the audit writer only, so the admin is read-only: no add, no change,
delete for superusers (retention is the prune command's job). Operators with the
``secure_ws.disconnect_connectionrecord`` permission (or superusers) may disconnect live
connections; each disconnect is recorded as a security event and an admin log entry naming
who did it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from secure_ws.audit.dashboard import build_dashboard
from secure_ws.audit.models import ConnectionRecord, SecurityEvent
from secure_ws.audit.records import EXPORT_FIELDS
from secure_ws.codes import CloseCode, Outcome, Reason
from secure_ws.sessions.revocation import kick_connection

#: Columns of the CSV export, in order.
CSV_COLUMNS = EXPORT_FIELDS

#: Security-event kind recorded when an operator disconnects a connection.
ADMIN_DISCONNECT_KIND = "admin_disconnect"


#: Characters a text cell of the connection list shows; the full value is its hover title.
#: With them the list fits a 1400-px screen (tests/audit/test_admin_browser.py).
CELL_WIDTHS = {"reason": 15, "username": 12, "client_ip": 15, "origin": 20}


def cell(value: object, width: int) -> SafeString:
    """``value`` cut to ``width`` characters (an ellipsis marks a cut), full text on hover."""
    text = "" if value is None else str(value)
    shown = text if len(text) <= width else text[: width - 1] + "\u2026"
    return format_html('<span title="{}">{}</span>', text, shown)


if TYPE_CHECKING:
    _InlineBase = admin.TabularInline[SecurityEvent, ConnectionRecord]
    _AdminBase = admin.ModelAdmin[ConnectionRecord]
else:
    _InlineBase = admin.TabularInline
    _AdminBase = admin.ModelAdmin


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_cell(value: object) -> str:
    """Return ``value`` as text a spreadsheet will not run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


class LiveFilter(admin.SimpleListFilter):
    """Connections accepted whose close has not been recorded yet."""

    title = "live now"
    parameter_name = "live"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Live"), ("no", "Closed or refused")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        live = {"outcome": Outcome.ACCEPTED.value, "closed_at__isnull": True}
        if self.value() == "yes":
            return queryset.filter(**live)
        if self.value() == "no":
            return queryset.exclude(**live)
        return queryset


class SecurityEventInline(_InlineBase):
    """The violations inside one connection, oldest first."""

    model = SecurityEvent
    fields = ("created_at", "kind", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Whoever may read a connection may read its events.
        return bool(request.user.has_perm("secure_ws.view_connectionrecord"))


def _mark_closed(record: ConnectionRecord) -> None:
    """Show a kicked connection closed at once, not after its process's audit flush.

    The close record the holding process writes a moment later overwrites these columns
    with its exact values (counters included); a row already closed is left alone.
    """
    now = timezone.now()
    ConnectionRecord.objects.filter(pk=record.pk, closed_at__isnull=True).update(
        closed_at=now,
        duration=max(0.0, (now - record.opened_at).total_seconds()),
        close_code=CloseCode.FORBIDDEN.value,
        reason=Reason.REVOKED.value,
    )


class ConnectionRecordAdmin(_AdminBase):
    """Read-only connection list with filters, CSV export, disconnect and a dashboard."""

    change_list_template = "admin/secure_ws/connectionrecord/change_list.html"
    date_hierarchy = "opened_at"
    # Narrow columns (long values cut, full on hover) so the list fits a 1400-px screen
    # beside the admin's two sidebars; duration, counters and the auth method are on each
    # row's page and in the CSV export.
    list_display = (
        "opened",
        "status",
        "reason_cell",
        "username_cell",
        "client_ip_cell",
        "origin_cell",
    )
    list_filter = (
        "outcome",
        "reason",
        "auth_method",
        LiveFilter,
        ("user", admin.RelatedOnlyFieldListFilter),
        "origin",
    )
    search_fields = ("username", "client_ip", "origin", "connection_id")
    list_select_related = ("user",)
    list_per_page = 100
    show_full_result_count = False
    inlines = (SecurityEventInline,)
    actions = ("export_csv", "disconnect")

    @admin.display(description="opened", ordering="opened_at")
    def opened(self, obj: ConnectionRecord) -> str:
        return timezone.localtime(obj.opened_at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="status", ordering="count")
    def status(self, obj: ConnectionRecord) -> str:
        """``live``, ``accepted`` (closed) or ``refused``, with an aggregate's attempts.

        Sorting by this column sorts by that number (floods first, descending).
        """
        outcome = "live" if obj.is_live else obj.outcome
        return f"{outcome} \u00d7{obj.count}" if obj.count > 1 else outcome

    @admin.display(description="reason", ordering="reason")
    def reason_cell(self, obj: ConnectionRecord) -> SafeString:
        return cell(obj.reason, CELL_WIDTHS["reason"])

    @admin.display(description="user", ordering="username")
    def username_cell(self, obj: ConnectionRecord) -> SafeString:
        return cell(obj.username, CELL_WIDTHS["username"])

    @admin.display(description="client IP", ordering="client_ip")
    def client_ip_cell(self, obj: ConnectionRecord) -> SafeString:
        return cell(obj.client_ip, CELL_WIDTHS["client_ip"])

    @admin.display(description="origin", ordering="origin")
    def origin_cell(self, obj: ConnectionRecord) -> SafeString:
        return cell(obj.origin, CELL_WIDTHS["origin"])

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_disconnect_permission(self, request: HttpRequest) -> bool:
        """Whether ``request.user`` may close other people's live connections."""
        return bool(
            request.user.is_active
            and request.user.is_staff
            and request.user.has_perm("secure_ws.change_connectionrecord")
        )

    @admin.action(description="Export selected as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[ConnectionRecord]) -> Any:
        """Stream the selected rows as CSV (cells that look like formulas are quoted)."""
        writer = csv.writer(_Echo())

        def rows() -> Iterator[str]:
            yield writer.writerow(CSV_COLUMNS)
            for values in queryset.order_by("-opened_at").values_list(*CSV_COLUMNS).iterator():
                yield writer.writerow([_csv_cell(v) for v in values])

        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="ws-connections-{stamp}.csv"'
        return response

    @admin.action(
        description="Disconnect selected live connections (4403)", permissions=["disconnect"]
    )
    def disconnect(self, request: HttpRequest, queryset: QuerySet[ConnectionRecord]) -> None:
        """Close each selected live connection on whatever process holds it."""
        done = 0
        skipped = 0
        for record in queryset.filter(outcome=Outcome.ACCEPTED.value, closed_at__isnull=True):
            async_to_sync(kick_connection)(record.connection_id)
            who = f"by {request.user.get_username()} (id {request.user.pk})"
            SecurityEvent.objects.create(
                record=record,
                kind=ADMIN_DISCONNECT_KIND,
                detail=f"disconnected {who}",
                created_at=timezone.now(),
            )
            self.log_change(request, record, f"Disconnected {who}")
            _mark_closed(record)
            done += 1
        skipped += queryset.count() - done - skipped
        self.message_user(request, f"Disconnected {done} connection(s).", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} selected row(s) were not live; left alone.", messages.WARNING
            )

    def get_urls(self) -> list[URLPattern]:
        dashboard = path(
            "dashboard/",
            self.admin_site.admin_view(self.dashboard_view),
            name="secure_ws_connectionrecord_dashboard",
        )
        return [dashboard, *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """Accepted vs refused per hour for 24 h, top refused IPs and origins, live count."""
        if not self.has_view_permission(request):
            return HttpResponse("forbidden", status=403)
        context = {
            **self.admin_site.each_context(request),
            "title": "WebSocket connections: last 24 hours",
            "opts": self.model._meta,
            "board": build_dashboard(),
        }
        return TemplateResponse(request, "admin/secure_ws/dashboard.html", context)
