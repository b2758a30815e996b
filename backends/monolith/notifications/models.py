from django.db import models


class Notification(models.Model):
    # The recipient's external subject (X-User-Id / the token's `sub`), not a foreign key:
    # the notifications service knows users only by that id, and so does this table.
    user_id = models.CharField(max_length=128, db_index=True)
    kind = models.CharField(max_length=64)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
