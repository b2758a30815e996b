"""notifications: the first app extracted (to backends/notifications, the seed's NotificationService).

It still owns the local table (the system of record during the migration, and the fallback
when the service is unreachable) and the same API the service now serves.
"""
