from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services
from .serializers import CapturePaymentInput, PaymentSerializer


class PaymentListView(APIView):
    """GET /api/payments/: the caller's payments, newest first. POST: capture a payment."""

    def get(self, request: Request) -> Response:
        return Response(PaymentSerializer(services.payments_of(request.user), many=True).data)

    def post(self, request: Request) -> Response:
        payload = CapturePaymentInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        try:
            payment = services.capture_payment(request.user, data["order_id"], data["amount"])
        except services.OrderNotFound:
            raise NotFound(f"order {data['order_id']} not found") from None
        return Response(PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)
