from django.apps import AppConfig


class PoolsConfig(AppConfig):
    """The provisioning engine: lifecycles, drivers, tasks, warm pools and claims."""

    name = "pools"

    def ready(self):
        from pools import cgroups, health, tasks, warmpool
        from pools.models import Workspace
        from portal import users
        from profiles import models as catalog

        # The sweep must not reap warm-pool instances (or claimed ones a workspace owns).
        if warmpool.live_names not in tasks.LIVE_NAME_SOURCES:
            tasks.LIVE_NAME_SOURCES.append(warmpool.live_names)
        # The portal's user pages show live workspaces without importing the engine.
        if Workspace.objects.live_counts_by_owner not in users.LIVE_WORKSPACE_COUNTERS:
            users.LIVE_WORKSPACE_COUNTERS.append(Workspace.objects.live_counts_by_owner)
        # The local infrastructure's status says how this host isolates and limits workspaces.
        if cgroups.describe_host not in catalog.LOCAL_ISOLATION_PROBES:
            catalog.LOCAL_ISOLATION_PROBES.append(cgroups.describe_host)
        # Saving an infrastructure entry has the engine check it (`pools.health`).
        if health.enqueue not in catalog.HEALTH_CHECK_REQUESTERS:
            catalog.HEALTH_CHECK_REQUESTERS.append(health.enqueue)
