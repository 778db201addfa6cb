from tests.workspace_fixtures import shared_database, workspaces_root  # noqa: F401


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "scale_out: starts gunicorn servers and django-q2 clusters on the test database "
        "(about a minute on two cores); runs in CI",
    )
