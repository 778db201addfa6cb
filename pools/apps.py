from django.apps import AppConfig


class PoolsConfig(AppConfig):
    name = "pools"

    def ready(self):
        from pools import tasks, warmpool

        # The sweep must not reap warm-pool instances (or claimed ones a workspace owns).
        if warmpool.live_names not in tasks.LIVE_NAME_SOURCES:
            tasks.LIVE_NAME_SOURCES.append(warmpool.live_names)
