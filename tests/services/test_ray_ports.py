"""Ray Client's port is reserved for its cluster (`services.backends.ports`), like the GCS
port the supervisor registers with the process: on a host whose workspaces share its
network, two clusters never get the same port, and every check plans the cluster with the
ports it was started with. A port a services profile fixes is reserved too."""

import socket
import sys
from pathlib import Path

import pytest

from pools import isolation, supervisor, tasks
from pools.drivers.base import PermanentError, TransientError, WorkspaceSpec
from pools.lifecycle import State
from portal.roles import Role
from profiles.models import ServicesProfile
from services import actions as services
from services import tasks as service_tasks
from services.backends import local
from services.backends import ports as reservations
from services.backends.base import FAILED, ComponentContext
from services.backends.local import PROCESS_FILE, SERVICES_DIR, LocalServices, plan, stop_all
from services.components import component
from services.models import ReservedPort
from tests.services.conftest import drive, remove
from tests.workspace_fixtures import wait_for

RAY = component("ray")
CLIENT = "Ray Client (ray.init, from the workspace)"


@pytest.fixture
def shared_network(settings):
    """Workspaces in the host's network (no network namespace of their own)."""
    settings.LOCAL_WORKSPACE_NETWORK = "host"
    assert not isolation.host_capability().own_network


@pytest.fixture
def cpu_workspace(scientist, starter, workspaces_root, workspace_factory):
    """Makes local workspaces provisioned for real, without GPUs (the scientist's unless
    another owner is given)."""
    made = []

    def make(owner=scientist):
        workspace = workspace_factory(owner, starter)
        assert tasks.provision_workspace(workspace.pk) == "ready"
        workspace.refresh_from_db()
        made.append(workspace)
        return workspace

    yield make
    for workspace in made:
        stop_all(workspaces_root / workspace.resource_name)


# What `ray start` says when its raylet did not register within the fixed 30 s Ray allows
# (`ray._private.node`, not configurable): on 2 cores shared with the suite's other
# tests (a browser, JupyterLab) a cluster can miss it, whatever the portal does.
RAY_STARTUP_TIMEOUT = "The current node timed out during startup"


def deploy_ray(user, workspace, **parameters):
    """A Ray cluster of one CPU (Ray starts a worker per CPU), deployed again, as its owner
    would, should Ray itself time out starting (at most twice)."""
    deployment = services.deploy(user, workspace, ServicesProfile.objects.get(name="Ray"))
    deployment.components.update(parameters={"num_cpus": 1, **parameters})
    for _ in range(3):
        drive(deployment.pk)
        deployment.refresh_from_db()
        if deployment.state != State.FAILED or not ray_timed_out(deployment):
            break
        services.redeploy(user, deployment)
    assert deployment.state == State.READY, deployment.failure_reason
    return deployment


def ray_timed_out(deployment) -> bool:
    (row,) = deployment.components.all()
    return RAY_STARTUP_TIMEOUT in row.log_tail


def ray_process(workspaces_root: Path, workspace) -> supervisor.ProcessRecord:
    directory = workspaces_root / workspace.resource_name / SERVICES_DIR / "ray"
    return supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)


def argument(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def ray_context(name: str = "ws-1") -> ComponentContext:
    spec = WorkspaceSpec(name=name, owner="", profile="", profile_version=0, groups=())
    return ComponentContext(spec, RAY, RAY.default_version, RAY.resolve({}))


@pytest.mark.local_services
def test_two_ray_clusters_on_a_shared_network_get_ports_of_their_own(
    shared_network, cpu_workspace, scientist, workspaces_root
):
    first = cpu_workspace()
    first_stack = deploy_ray(scientist, first)
    first_ray = ray_process(workspaces_root, first)
    # The second cluster's GCS port is the one below the first's: Ray Client's port
    # derived from it (the GCS port + 1) would be the first cluster's registered port.
    second = cpu_workspace()
    second_stack = deploy_ray(scientist, second, port=first_ray.port - 1)
    second_ray = ray_process(workspaces_root, second)
    assert second_ray.port == first_ray.port - 1

    taken = {}
    for stack, ray in ((first_stack, first_ray), (second_stack, second_ray)):
        client = reservations.held(ray)["client"]
        # The cluster runs with the reserved port, and its endpoint names it.
        assert argument(ray.argv, "--ray-client-server-port") == str(client)
        (row,) = stack.components.all()
        assert {e["name"]: e["url"] for e in row.endpoints}[CLIENT] == f"ray://127.0.0.1:{client}"
        wait_for(lambda client=client: accepts(client), 60, what="Ray Client to listen")
        # Every check plans the cluster again: the same ports.
        for _ in range(3):
            assert service_tasks.check_stack(stack) == []
            row.refresh_from_db()
            assert {e["name"]: e["url"] for e in row.endpoints}[CLIENT].endswith(f":{client}")
        taken[stack.pk] = {ray.port, client}
    assert not taken[first_stack.pk] & taken[second_stack.pk]
    assert (
        ReservedPort.objects.get(port=reservations.held(first_ray)["client"]).process.pid
        == first_ray.pid
    )

    # Stopped, a cluster's process is unregistered, and its reservation with it.
    remove(scientist, first_stack)
    assert not supervisor.is_running(first_ray)
    assert reservations.held(first_ray) == {}
    assert not ReservedPort.objects.filter(port__in=taken[first_stack.pk]).exists()
    assert reservations.held(second_ray) != {}


def test_a_port_another_workspace_holds_is_never_drawn(db, tmp_path, monkeypatch):
    """Held by a registered process (which may be between a stop and a start, not
    listening) or reserved for one: the kernel may call it free, it is not given out."""
    sleeper = supervisor.start(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        tmp_path,
        {},
        tmp_path / "sleep.log",
        port=supervisor.free_port(),
    )
    try:
        reserved = reservations.reserve(["client"])["client"]
        fresh = supervisor.free_port()
        answers = iter([sleeper.port, reserved, fresh])
        monkeypatch.setattr(supervisor, "free_port", lambda: next(answers))

        assert reservations.reserve(["client"]) == {"client": fresh}
    finally:
        supervisor.stop(sleeper)


@pytest.mark.local_services
def test_a_port_the_profile_fixes_is_not_given_to_a_second_workspace(
    shared_network, cpu_workspace, scientist, user_factory
):
    """Two workspaces deploy a profile that fixes its jobs queue's port. The second one's
    queue could not listen there, and its health check and endpoint would be the first
    one's service (where its owner's token would go): it fails, saying why."""
    port = supervisor.free_port()
    jobs = ServicesProfile.objects.get(name="Jobs")
    jobs.components.update(parameters={"port": str(port)})
    first = services.deploy(scientist, cpu_workspace(), jobs)
    drive(first.pk)
    first.refresh_from_db()
    assert first.state == State.READY, first.failure_reason
    # Its process holds the reservation, as long as it is registered.
    assert ReservedPort.objects.get(port=port).process is not None

    other = user_factory("eve", Role.MEMBER)
    second = services.deploy(other, cpu_workspace(other), jobs)
    drive(second.pk)
    second.refresh_from_db()
    (row,) = second.components.all()
    assert (second.state, row.status, row.endpoints) == (State.FAILED, FAILED, [])
    assert f"Port {port}, which its services profile sets, is in use" in row.reason


def test_a_fixed_port_held_by_a_workspace_or_listened_on_is_not_reserved(db, tmp_path):
    sleeper = supervisor.start(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        tmp_path,
        {},
        tmp_path / "sleep.log",
        port=supervisor.free_port(),
    )
    try:
        with pytest.raises(PermanentError, match="in use on this host"):
            reservations.reserve_fixed(sleeper.port)
    finally:
        supervisor.stop(sleeper)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with pytest.raises(PermanentError, match="in use on this host"):
            reservations.reserve_fixed(listener.getsockname()[1])
    assert not ReservedPort.objects.exists()

    free = supervisor.free_port()
    assert reservations.reserve_fixed(free) == {reservations.FIXED: free}
    with pytest.raises(PermanentError, match="in use on this host"):  # reserved: taken
        reservations.reserve_fixed(free)
    assert reservations.reserve_fixed(0) == {}


def test_ray_is_planned_with_its_reserved_client_port(db, tmp_path):
    directory = tmp_path / "ws-1" / SERVICES_DIR / "ray"
    process, meta = plan(ray_context(), directory, "", port=6000, ports={"client": 7123})
    assert argument(process.argv, "--port") == "6000"
    assert argument(process.argv, "--ray-client-server-port") == "7123"
    assert {e["name"]: e["url"] for e in meta["endpoints"]}[CLIENT] == "ray://127.0.0.1:7123"


def test_a_cluster_started_before_client_ports_were_reserved_keeps_the_one_it_runs_with(
    db, tmp_path
):
    """Such a cluster holds no reservation: until it starts again, its checks plan Ray
    Client where it was started, next to the GCS port."""
    directory = tmp_path / "ws-1" / SERVICES_DIR / "ray"
    process, meta = plan(ray_context(), directory, "", port=6000, ports={})
    assert argument(process.argv, "--ray-client-server-port") == "6001"
    assert {e["name"]: e["url"] for e in meta["endpoints"]}[CLIENT] == "ray://127.0.0.1:6001"


def test_a_start_that_fails_frees_the_ports_reserved_for_it(
    cpu_workspace, scientist, workspaces_root
):
    workspace = cpu_workspace()
    # The workspace put a file where the services' directory goes: the start fails.
    (workspaces_root / workspace.resource_name / SERVICES_DIR).write_text("not a directory")
    result = LocalServices(workspace.infrastructure).deploy(
        ray_context(workspace.resources_spec().name)
    )
    assert result.status == FAILED
    assert not ReservedPort.objects.exists()


@pytest.mark.parametrize(
    "error",
    [
        # `supervisor.start` raises these itself: `ensure_egress` ("No way out of the
        # workspace's network"), `isolation.private_tmp` (its /tmp keeps being replaced by
        # a link, which the workspace's own code can do), `isolation.hand_over`.
        TransientError("No way out of ws-1's network."),
        PermanentError("/srv/ws-1/services/ray is not a directory."),
    ],
    ids=["transient", "permanent"],
)
def test_a_start_that_raises_a_driver_error_frees_the_ports_reserved_for_it(
    cpu_workspace, monkeypatch, error
):
    """Not only an OSError: a DriverError of the sandbox (egress, its /tmp, the hand-over)
    frees them too, else each retry of the deploy task reserved one more port."""
    workspace = cpu_workspace()
    assert workspace.state == State.READY

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(local.supervisor, "start", refuse)
    backend = LocalServices(workspace.infrastructure)
    ctx = ray_context(workspace.resources_spec().name)
    for _ in range(3):  # the deploy task retries a TransientError
        with pytest.raises(type(error)):
            backend.deploy(ctx)
    assert list(ReservedPort.objects.values_list("port", flat=True)) == []
