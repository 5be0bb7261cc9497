"""URLs of the demo project."""

from django.contrib import admin
from django.urls import path
from rest_framework_simplejwt.views import (
    TokenBlacklistView,
    TokenObtainPairView,
    TokenRefreshView,
)

from project.filebox.api import FolderFilesView, FolderFileView, FolderListView
from secure_ws.tickets import WebSocketTicketView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/token/", TokenObtainPairView.as_view(), name="token_obtain_pair"),
    path("api/token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("api/token/blacklist/", TokenBlacklistView.as_view(), name="token_blacklist"),
    path("api/ws-ticket/", WebSocketTicketView.as_view(), name="ws_ticket"),
    path("api/folders/", FolderListView.as_view(), name="folder_list"),
    path("api/folders/<slug:folder>/files/", FolderFilesView.as_view(), name="folder_files"),
    path(
        "api/folders/<slug:folder>/files/<uuid:file_id>/",
        FolderFileView.as_view(),
        name="folder_file",
    ),
]
