from decimal import Decimal

from rest_framework import serializers

from .models import Order, OrderItem


class LineItemInput(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)
    unit_price = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=Decimal("0.00"))


class PlaceOrderInput(serializers.Serializer):
    items = LineItemInput(many=True, allow_empty=False, max_length=100)


class OrderItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderItem
        fields = ["sku", "quantity", "unit_price"]


class OrderSerializer(serializers.ModelSerializer):
    items = OrderItemSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = ["id", "status", "total", "items", "created_at"]
