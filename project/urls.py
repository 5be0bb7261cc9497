"""URLs of the demo project."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView
from rest_framework_simplejwt.views import (
    TokenBlacklistView,
    TokenObtainPairView,
    TokenRefreshView,
)

from project.filebox.api import FolderFilesView, FolderFileView, FolderListView
from project.filebox.views import index
from secure_ws.api.throttling import ScopedRateThrottle
from secure_ws.audit.metrics import metrics_view
from secure_ws.gate.tickets import WebSocketTicketView


# Password guessing and refresh-token replay: throttled per client IP (scope rates in
# settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]); refused logins count too.
class ThrottledTokenObtainPairView(TokenObtainPairView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"


class ThrottledTokenRefreshView(TokenRefreshView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token_refresh"


urlpatterns = [
    path("", index, name="demo"),
    # Browsers ask every page's origin for /favicon.ico (the admin's pages link none).
    path("favicon.ico", RedirectView.as_view(url=static("filebox/favicon.svg"))),
    path("admin/", admin.site.urls),
    path("api/token/", ThrottledTokenObtainPairView.as_view(), name="token_obtain_pair"),
    path("api/token/refresh/", ThrottledTokenRefreshView.as_view(), name="token_refresh"),
    path("api/token/blacklist/", TokenBlacklistView.as_view(), name="token_blacklist"),
    path("api/ws-ticket/", WebSocketTicketView.as_view(), name="ws_ticket"),
    path("metrics", metrics_view, name="metrics"),
    path("api/folders/", FolderListView.as_view(), name="folder_list"),
    path("api/folders/<slug:folder>/files/", FolderFilesView.as_view(), name="folder_files"),
    path(
        "api/folders/<slug:folder>/files/<uuid:file_id>/",
        FolderFileView.as_view(),
        name="folder_file",
    ),
]
