from decimal import Decimal

from rest_framework import serializers

from . import services
from .models import Payment


class CapturePaymentInput(serializers.Serializer):
    order_id = serializers.IntegerField(min_value=1)
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"))


class PaymentSerializer(serializers.ModelSerializer):
    served_by = serializers.SerializerMethodField()

    class Meta:
        model = Payment
        fields = ["id", "order_id", "amount", "status", "served_by", "created_at"]

    def get_served_by(self, payment: Payment) -> str:
        return services.SERVED_BY
