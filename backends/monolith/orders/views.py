from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services
from .serializers import OrderSerializer, PlaceOrderInput


class OrderListView(APIView):
    """GET /api/orders/: the caller's orders, newest first. POST: place an order."""

    def get(self, request: Request) -> Response:
        return Response(OrderSerializer(services.orders_of(request.user), many=True).data)

    def post(self, request: Request) -> Response:
        payload = PlaceOrderInput(data=request.data)
        payload.is_valid(raise_exception=True)
        items = [services.LineItem(**item) for item in payload.validated_data["items"]]
        order = services.place_order(request.user, items)
        return Response(OrderSerializer(order).data, status=status.HTTP_201_CREATED)


class OrderDetailView(APIView):
    """GET /api/orders/<id>/: one of the caller's orders (404 for anyone else's)."""

    def get(self, request: Request, pk: int) -> Response:
        try:
            order = services.get_order(request.user, pk)
        except services.OrderNotFound:
            raise NotFound(f"order {pk} not found") from None
        return Response(OrderSerializer(order).data)
