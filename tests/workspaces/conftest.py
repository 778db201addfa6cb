from tests.workspace_fixtures import (  # noqa: F401
    fake_gpus,
    qcluster,
    shared_database,
    starter,
    sync_tasks,
    workspace_factory,
    workspaces_root,
)
