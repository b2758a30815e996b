from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from monolith.permissions import SERVICE_ROLES, has_any_role, require_any_role

from . import services
from .serializers import NotificationInput, NotificationSerializer


class NotificationListView(APIView):
    """GET /api/notifications/: the caller's notifications, newest first (`?user_id=` lets an
    admin read anyone's). POST: create one for any user: services and admins only."""

    def get_permissions(self):
        if self.request.method == "POST":
            return [require_any_role(*SERVICE_ROLES)()]
        return [IsAuthenticated()]

    def get(self, request: Request) -> Response:
        user_id = request.query_params.get("user_id")
        if user_id is None or user_id == request.user.external_id:
            user_id = request.user.external_id
        elif not has_any_role(request, ("admin",)):
            raise PermissionDenied("only admins may read another user's notifications")
        notifications = services.notifications_for(user_id)
        return Response(NotificationSerializer(notifications, many=True).data)

    def post(self, request: Request) -> Response:
        payload = NotificationInput(data=request.data)
        payload.is_valid(raise_exception=True)
        notification = services.create_local(**payload.validated_data)
        return Response(NotificationSerializer(notification).data, status=status.HTTP_201_CREATED)
