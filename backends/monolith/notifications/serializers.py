from rest_framework import serializers

from .models import Notification


class NotificationInput(serializers.Serializer):
    user_id = serializers.RegexField(r"^[A-Za-z0-9._:@|+-]{1,128}$", max_length=128)
    kind = serializers.CharField(max_length=64)
    message = serializers.CharField(max_length=2000)


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "user_id", "kind", "message", "created_at"]
