"""What a component of the catalog is: its capabilities, typed parameters, needs, and how it
runs on each driver; and the registry of components.

A component is one subclass of `Component`, listed in the registry (`register`, called by
`services/components/__init__.py`). It declares:
- what it is: `code`, `name`, `capabilities`, `default_version`, `description`;
- its typed `parameters` (with defaults and validation) and its needs: `min_gpus`,
  capabilities it `requires` in the same profile, capabilities that must come `after` it;
- its secret (`secret_key`: the key of its generated credential, "" for none) and its
  health check (`health`: an HTTP path and the container port; locally the same path on the
  process's port, or a `ready_marker` in its log);
- how it runs locally (`local_process()`: argv, environment, endpoints, for a `LocalTarget`,
  with any `local_ports` besides its `port`)
  and on Kubernetes (`kubernetes()`: its container, volumes, configuration files and extra
  Deployments, for a `Target`).

The backends in `services.backends` know no component: they ask the class and render what
it declares. This layer describes; it imports nothing of the engine, so the targets a
backend passes in are plain data defined here.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from django.db import models


class Capability(models.TextChoices):
    NOTEBOOK = "notebook", "Notebook"
    TRAINING = "training", "Training"
    INFERENCE = "inference", "Inference"
    PIPELINES = "pipelines", "Pipelines"
    MODEL_REGISTRY = "model_registry", "Model registry"
    EXPERIMENT_TRACKING = "experiment_tracking", "Experiment tracking"
    FEATURE_STORE = "feature_store", "Feature store"
    OBJECT_STORE = "object_store", "Object store"
    AUTHENTICATION = "authentication", "Authentication"
    DISTRIBUTED_COMPUTE = "distributed_compute", "Distributed compute"
    JOBS = "jobs", "Jobs"


INT, STR, BOOL, CHOICE = "int", "str", "bool", "choice"
# A pod's sizing stays within what a compute profile's resource group may ask for
# (`profiles.models.MAX_CPU`, `MAX_RAM_GB`, `MAX_STORAGE_GB`; profiles imports this layer,
# so the numbers are repeated here and a test keeps them equal).
MAX_CPU = 1024
MAX_MEMORY_GB = 65_536
MAX_STORAGE_GB = 1_000_000
# What Docker and every OCI registry accept as an image tag: the version is formatted into
# one (`Component.image`), so anything else makes every deployment fail to pull.
IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
SERVICES_EXTRA = "pip install 'gpu-paas-portal[services]'"
NOT_LOCAL = "not available on local infrastructure"


class ParameterError(ValueError):
    """A parameter value the catalog refuses; its message, in the catalog's own words, is
    for the page (unlike any other ValueError, whose text may quote anything)."""


@dataclass(frozen=True)
class Parameter:
    """One typed parameter of a component; `parse` turns form text into the stored value."""

    name: str
    kind: str
    default: object
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None

    def parse(self, raw) -> object:
        """The typed value of `raw` (text from a form, or a stored value); ParameterError if
        bad."""
        if self.kind == INT:
            try:
                value = int(str(raw).strip())
            except ValueError:
                raise ParameterError(f"{self.name} must be a whole number, not “{raw}”.") from None
            if self.minimum is not None and value < self.minimum:
                raise ParameterError(f"{self.name} must be at least {self.minimum}.")
            if self.maximum is not None and value > self.maximum:
                raise ParameterError(f"{self.name} must be at most {self.maximum}.")
            return value
        if self.kind == BOOL:
            text = str(raw).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off", ""):
                return False
            raise ParameterError(f"{self.name} must be true or false, not “{raw}”.")
        if self.kind == CHOICE:
            if str(raw) not in self.choices:
                raise ParameterError(f"{self.name} must be one of {', '.join(self.choices)}.")
            return str(raw)
        if has_control_character(str(raw)):
            raise ParameterError(f"{self.name} must not hold control characters (a NUL byte, say).")
        return str(raw)


def has_control_character(text: str) -> bool:
    """Whether `text` holds a control character: no parameter means one, and the database
    refuses a NUL byte in the JSON it is stored in."""
    return any(unicodedata.category(character) == "Cc" for character in text)


def local_port(what: str = "Local port") -> Parameter:
    """The `port` parameter of a component that listens locally."""
    return Parameter("port", INT, 0, f"{what}; 0 picks a free one.", (), 0, 65535)


def resources(
    cpu: int = 1, memory_gb: int = 2, gpus: int = 0, storage_gb: int = 0
) -> tuple[Parameter, ...]:
    """The Kubernetes sizing parameters every component has."""
    params = [
        Parameter(
            "cpu",
            INT,
            cpu,
            "vCPUs of the component's pod (Kubernetes).",
            minimum=1,
            maximum=MAX_CPU,
        ),
        Parameter(
            "memory_gb",
            INT,
            memory_gb,
            "Memory of the pod in GiB (Kubernetes).",
            minimum=1,
            maximum=MAX_MEMORY_GB,
        ),
        Parameter("gpus", INT, gpus, "GPUs of the pod (Kubernetes).", minimum=0, maximum=16),
    ]
    if storage_gb:
        params.append(
            Parameter(
                "storage_gb",
                INT,
                storage_gb,
                "Persistent volume size in GiB.",
                minimum=1,
                maximum=MAX_STORAGE_GB,
            )
        )
    return tuple(params)


def version_problem(version: str) -> str:
    """Why a component version cannot be used ("" when it can): it becomes part of the
    image tag, so it must be one itself (letters, digits, "_", "." and "-", not starting
    with "." or "-", at most 128 characters)."""
    if IMAGE_TAG.fullmatch(version):
        return ""
    return (
        "A version is what the image tag is made of: letters, digits, dots, dashes and "
        "underscores, starting with a letter, digit or underscore (e.g. 4.4)."
    )


def object_name(workspace: str, code: str) -> str:
    """The stable name of a component's resources: `<workspace>-<component>`."""
    return f"{workspace}-{code}"


# -- what a backend gives a component ----------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One component to realise for one workspace (or pool instance), as plain data."""

    workspace: str  # the workspace's stable name, the prefix of every object it has
    name: str  # the component's own objects: `object_name(workspace, code)`
    version: str
    parameters: dict  # resolved: typed, defaults filled in

    def peer(self, other: type[Component]) -> str:
        """The name of another component's objects in the same workspace (a host name)."""
        return object_name(self.workspace, other.code)


@dataclass(frozen=True)
class LocalTarget(Target):
    """A component run as a process next to a local workspace."""

    directory: Path  # the component's own directory: data, log, process record
    workdir: Path  # the workspace's directory (its files, its environment)
    port: int  # where it listens: the `port` parameter, or a free port
    secret: str  # its credential, passed in its environment ("" when it has none)
    free_port: Callable[[], int]  # another free local port, drawn anew at each call
    executable: Callable[[str], str]  # a console script of the portal's environment
    # Its `local_ports`, by name: reserved for its process on this host, the same at every
    # check. A process started before they were reserved holds none until it starts again.
    ports: dict[str, int] = field(default_factory=dict)


# -- what a component declares per driver ------------------------------------------------


@dataclass(frozen=True)
class HealthCheck:
    """An HTTP path that answers 2xx once the component serves; `port` is its container's."""

    path: str
    port: int


@dataclass(frozen=True)
class LocalProcess:
    """How the local driver runs a component: one supervised process."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # over the workspace's environment
    endpoints: list[dict] = field(default_factory=list)  # [{"name", "url", "token"?}]
    # Kept beside the process record; "temp_dir" is deleted when the process is stopped.
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class KubeWorkers:
    """Another Deployment of the component (e.g. Ray's workers): the main container with
    `overrides` (its name, command, args), no ports, `replicas` pods."""

    suffix: str
    role: str
    replicas: int
    overrides: dict


@dataclass(frozen=True)
class KubeWorkload:
    """How a component runs on Kubernetes, besides what every component gets (its Secret
    when it has a `secret_key`, its claim when it has `storage_gb`, its labels, resources,
    GPU placement, readiness probe and ClusterIP Service)."""

    # The main container's command, args, env, ports, workingDir (no name, image or
    # resources: the backend adds them). Ports are [{"name", "containerPort"}].
    container: dict = field(default_factory=dict)
    data_path: str = "/data"  # where its claim is mounted (when it has `storage_gb`)
    scratch: bool = False  # an emptyDir at `data_path` when it has no claim
    config_files: dict[str, str] | None = None  # a ConfigMap named like the component
    config_path: str = ""  # where that ConfigMap is mounted; "" = not mounted
    workers: tuple[KubeWorkers, ...] = ()
    pods: bool = True  # False: a binding only (no Deployment, no Service), ready at once
    # Its pods call the Kubernetes API (Kubeflow Pipelines' API server), so they keep the
    # namespace's service-account token; every other pod gets none, so code running in
    # it holds no credential to the cluster.
    cluster_api: bool = False


def secret_env(target: Target, env_name: str, key: str, optional: bool = False) -> dict:
    """A container environment variable read from the component's Secret."""
    ref: dict = {"name": target.name, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": env_name, "valueFrom": {"secretKeyRef": ref}}


class NotRunnable(Exception):
    """The component has no realisation on this driver."""


# -- the component -----------------------------------------------------------------------


class Component:
    """Base class of the catalog's components; subclasses set the class attributes."""

    code: ClassVar[str]
    name: ClassVar[str]
    capabilities: ClassVar[tuple[str, ...]]
    default_version: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    ports: ClassVar[tuple[int, ...]] = ()  # its endpoints' ports on Kubernetes
    min_gpus: ClassVar[int] = 0  # GPUs the compute profile must offer for it to be useful
    requires: ClassVar[tuple[str, ...]] = ()  # capabilities the profile must also provide
    after: ClassVar[tuple[str, ...]] = ()  # capabilities that must come earlier in the profile
    image: ClassVar[str] = ""  # container image (Kubernetes), `{version}` filled in
    # Python modules the local driver runs it from (and with): all must be installed.
    local_packages: ClassVar[tuple[str, ...]] = ()
    local_unavailable: ClassVar[str] = ""  # why it cannot run on the local driver at all
    # What a data scientist reads when it is not available; "" = the generic wording.
    unavailable_plain: ClassVar[str] = ""
    secret_key: ClassVar[str] = ""  # the key of its generated credential; "" = none
    health: ClassVar[HealthCheck | None] = None
    ready_marker: ClassVar[str] = ""  # locally, without `health`: a line its log shows
    # Names of the other local ports its process listens on, besides `port`: the local
    # backend reserves one for each on the host (`LocalTarget.ports`), so no other
    # workspace's process is given it where workspaces share the host's network.
    local_ports: ClassVar[tuple[str, ...]] = ()
    start_timeout: ClassVar[int] = 60  # seconds it usually takes to start, checked often

    def __repr__(self) -> str:
        return f"<component {self.code}>"

    # -- parameters --------------------------------------------------------------------

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.parameters}

    def resolve(self, given: dict) -> dict:
        """Defaults overlaid with `given`, typed; ParameterError naming the first bad one."""
        values = self.defaults()
        for name, raw in (given or {}).items():
            found = self.parameter(name)
            if found is None:
                known = ", ".join(p.name for p in self.parameters) or "none"
                raise ParameterError(f"{self.name} has no parameter “{name}” (known: {known}).")
            values[name] = found.parse(raw)
        return values

    def storage_gb(self, given: dict) -> int:
        return int(self.resolve(given).get("storage_gb", 0))

    def gpus(self, given: dict) -> int:
        return max(int(self.resolve(given).get("gpus", 0)), self.min_gpus)

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_key)

    # -- the local driver --------------------------------------------------------------

    def local_availability(self) -> tuple[bool, str]:
        """(True, "") when the local driver can run it here, else (False, why)."""
        if self.local_unavailable:
            return False, self.local_unavailable
        if any(importlib.util.find_spec(module) is None for module in self.local_packages):
            return False, (f"{self.name} is not installed on this portal host: {SERVICES_EXTRA}")
        return True, ""

    def unavailable_message(self) -> str:
        """Why it is missing, in a data scientist's words (no install commands, no drivers)."""
        return (
            self.unavailable_plain
            or f"{self.name} isn't available on this machine yet; ask your platform team."
        )

    def local_process(self, target: LocalTarget) -> LocalProcess:
        """The process that runs it next to a local workspace."""
        raise NotRunnable(f"{self.name} has no local realisation.")

    def local_health_url(self, target: LocalTarget) -> str:
        """What the local backend asks to know it serves; "" = the marker or the port."""
        if self.health is None:
            return ""
        return f"http://127.0.0.1:{target.port}{self.health.path}"

    # -- Kubernetes --------------------------------------------------------------------

    def image_for(self, version: str) -> str:
        return self.image.format(version=version)

    def kubernetes(self, target: Target) -> KubeWorkload:
        """Its container and objects on Kubernetes."""
        raise NotRunnable(f"{self.name} has no Kubernetes realisation.")

    def cluster_endpoints(self, host: str) -> list[dict]:
        """Where it answers inside the cluster, `host` being its Service's DNS name."""
        return [
            {"name": f"{self.name} ({port})", "url": f"http://{host}:{port}"} for port in self.ports
        ]


# -- the registry ------------------------------------------------------------------------

COMPONENTS: dict[str, Component] = {}


def register(*classes: type[Component]) -> None:
    """Add component classes to the catalog, in the order the forms offer them (each
    class's one instance answers for it)."""
    for cls in classes:
        if cls.code in COMPONENTS:
            raise ValueError(f"Two components have the code “{cls.code}”.")
        COMPONENTS[cls.code] = cls()


def choices() -> list[tuple[str, str]]:
    return [(c.code, c.name) for c in COMPONENTS.values()]


def component(code: str) -> Component | None:
    return COMPONENTS.get(code)


def check_stack(items: list[tuple[str, str, dict]], parameters: bool = True) -> list[str]:
    """Problems of a profile's (capability, component code, parameters) rows, in order.

    Each parameter set must resolve; each `requires` capability must be provided somewhere;
    each `after` capability, when present, must come earlier (MLflow before pipelines).
    """
    errors: list[str] = []
    positions: dict[str, int] = {}
    for index, (capability, code, _) in enumerate(items):
        found = component(code)
        if found:
            for provided in {capability, *found.capabilities}:
                positions.setdefault(provided, index)
    for index, (_, code, given) in enumerate(items):
        found = component(code)
        if found is None:
            errors.append(f"Unknown component “{code}”.")
            continue
        try:
            if parameters:
                found.resolve(given)
        except ValueError as error:
            errors.append(str(error))
        for needed in found.requires:
            if needed not in positions:
                errors.append(
                    f"{found.name} needs a component providing {Capability(needed).label}."
                )
        for earlier in found.after:
            if earlier in positions and positions[earlier] > index:
                errors.append(
                    f"{found.name} must come after the component providing "
                    f"{Capability(earlier).label}; move it down."
                )
    return errors
