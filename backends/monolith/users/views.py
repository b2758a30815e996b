from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .serializers import UserSerializer


class MeView(APIView):
    """GET /api/users/me: the caller, as the monolith knows them."""

    def get(self, request: Request) -> Response:
        return Response(UserSerializer(request.user).data)
