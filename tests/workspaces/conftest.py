from tests.workspace_fixtures import (  # noqa: F401
    fake_gpus,
    kubernetes_cluster,
    qcluster,
    shared_database,
    starter,
    sync_tasks,
    workspace_factory,
    workspaces_root,
)
