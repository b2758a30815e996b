"""`manage.py test` runner: the JSON log handler shows warnings and errors only during tests
(tests that check log lines capture them with assertLogs or their own handler)."""

import logging

from django.test.runner import DiscoverRunner


class QuietLogsRunner(DiscoverRunner):
    def setup_test_environment(self, **kwargs) -> None:
        super().setup_test_environment(**kwargs)
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING)
