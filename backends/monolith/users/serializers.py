from rest_framework import serializers

from .models import User


class UserSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="external_id")
    first_seen = serializers.DateTimeField(source="date_joined")

    class Meta:
        model = User
        fields = ["id", "email", "roles", "first_seen"]
