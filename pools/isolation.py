"""Who a local workspace's processes run as, and what they can see.

A job in a workspace is untrusted code. On the local driver it must not read the portal's
keys or database, another workspace's files, or signal the portal's processes. The host
decides how (`host_capability()`, probed once per process):

- "uid" (the portal runs as root): each workspace gets a uid and gid of its own from
  LOCAL_WORKSPACE_UID_MIN..LOCAL_WORKSPACE_UID_MAX, owns its directory (mode 0700), and its
  processes run in a bubblewrap sandbox that drops to that uid with setpriv: no
  capabilities, no supplementary groups, no new privileges.
- "userns" (the portal runs as another user, and unprivileged user namespaces work): the
  same sandbox in a user namespace; outside it the processes keep the portal's uid, so
  the hidden paths below are all that keeps them from the portal's files.
- "" (neither): processes run as the portal's user, unsandboxed. The local
  infrastructure says so and is offered only to Org admins until one marks it a
  single-user host (`profiles.models.Infrastructure.single_user_host`).

What a sandbox sees (`sandbox_argv`): the host's filesystem read-only; its own workspace
directory read-write, and a /tmp of its own (`private_tmp`: the workspace's `.tmp`, which
every process of the workspace shares and which goes with it; a shared /tmp would hand a
deleted workspace's files to the next one given its uid, let one workspace plant another's
files there, and show them the host's sockets and temporary files); a private /dev with
only the NVIDIA device nodes of its own GPUs (`pools.devices`; none without GPUs), a /proc
of its own PID namespace (the portal's processes do not exist there) and a private IPC
namespace. Empty
in its view: the portal's data directory (keys, SQLite database), the workspaces root
(every other workspace), the SQLite database wherever it lives, and the portal's `.env`.
A directory other users may not traverse (e.g. /root, which holds the interpreter under
pyenv) is replaced by an empty one with only what the processes need bound back in: the
workspace, the portal's code and virtualenv, the interpreter.

Where the portal runs as root and iproute2 works, each workspace also has a network
namespace of its own (`network_prefix`) with nothing but its loopback: it cannot connect
to the portal, its database, Redis or another workspace. A service's port is bound on the
host's 127.0.0.1 by the supervisor and served by a relay inside (`pools/relay.py`).
Elsewhere the network is shared, and the infrastructure's status says so.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from pools import relay
from pools.drivers.base import PermanentError, TransientError

UID, USERNS, NONE = "uid", "userns", ""
# What a sandboxed process keeps of the portal's own environment (everything else the
# portal has, e.g. SECRET_KEY, DATABASE_URL or cloud credentials, is dropped).
PASSED = frozenset({"PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TERM"})
# Set by the workspace itself, even when the portal happens to have the same value.
WORKSPACE_KEYS = frozenset({"CUDA_VISIBLE_DEVICES", "WORKSPACE_NAME", "WORKSPACE_DIR"})
TMP_DIR = ".tmp"  # in a workspace's directory: what its sandboxed processes see as /tmp


def workspaces_root() -> Path:
    """settings.WORKSPACES_ROOT, else $PORTAL_WORKSPACES_ROOT, else DATA_DIR/workspaces."""
    configured = getattr(settings, "WORKSPACES_ROOT", None) or os.environ.get(
        "PORTAL_WORKSPACES_ROOT"
    )
    return Path(configured or settings.DATA_DIR / "workspaces")


def workspace_of(cwd: Path) -> Path | None:
    """The workspace directory `cwd` lies in (compared as written, never through links)."""
    root = Path(os.path.abspath(workspaces_root()))
    try:
        relative = Path(os.path.abspath(cwd)).relative_to(root)
    except ValueError:
        return None
    return root / relative.parts[0] if relative.parts else None


# -- what this host can do ------------------------------------------------------------


@dataclass(frozen=True)
class Capability:
    mode: str  # UID, USERNS or NONE
    description: str  # what it does, for the infrastructure's status
    own_network: bool = False  # each workspace in a network namespace of its own
    egress: bool = False  # and a way out of it: its HTTPS proxy (`pools/relay.py`)
    sources: tuple[str, ...] = ()  # LOCAL_WORKSPACE_EGRESS_SOURCE, with `egress`

    @property
    def isolated(self) -> bool:
        return self.mode != NONE


def uid_range() -> tuple[int, int]:
    low = int(getattr(settings, "LOCAL_WORKSPACE_UID_MIN", 70000))
    return low, int(getattr(settings, "LOCAL_WORKSPACE_UID_MAX", low + 9999))


_probed: dict[tuple, Capability] = {}


def host_capability() -> Capability:
    """How this host isolates workspaces; probed once (running the sandbox) per setting.
    Whether the host has the egress source addresses is not part of it: see `describe`."""
    key = (
        getattr(settings, "LOCAL_WORKSPACE_ISOLATION", "auto"),
        getattr(settings, "LOCAL_WORKSPACE_NETWORK", "own"),
        getattr(settings, "LOCAL_WORKSPACE_EGRESS", "https"),
        tuple(getattr(settings, "LOCAL_WORKSPACE_EGRESS_ALLOW", ())),
        tuple(getattr(settings, "LOCAL_WORKSPACE_EGRESS_SOURCE", ())),
        os.geteuid(),
        uid_range(),
    )
    if key not in _probed:
        _probed[key] = _probe(*key)
    return _probed[key]


def describe() -> tuple[bool, str]:
    """(isolated, what holds) for the local infrastructure's status. Whether egress can
    leave from its source addresses is checked each time: an address can leave the host
    (or come back) at any moment, and meanwhile every proxy refuses every connection."""
    capability = host_capability()
    if not capability.egress:
        return capability.isolated, capability.description
    why_not = _source_problem(capability.sources)
    if why_not:
        why_not = f"Its proxy refuses every connection now: {why_not}."
        return capability.isolated, f"{capability.description} {why_not}"
    leaves_from = relay.describe_sources(relay.parse_sources(list(capability.sources)))
    return (
        capability.isolated,
        f"{capability.description} Its connections leave from {leaves_from}.",
    )


def _probe(
    setting: str,
    network: str,
    egress: str,
    allowed: tuple[str, ...],
    sources: tuple[str, ...],
    euid: int,
    uids: tuple[int, int],
) -> Capability:
    if setting == "off":
        return Capability(NONE, "Isolation is turned off (LOCAL_WORKSPACE_ISOLATION=off).")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Capability(NONE, "bubblewrap is not installed (apt-get install bubblewrap).")
    if euid == 0:
        low, high = uids
        if not 1000 <= low <= high < 2**31 - 1:
            return Capability(NONE, f"The workspace uid range {low}-{high} is not usable.")
        if shutil.which("setpriv") is None:
            return Capability(NONE, "setpriv (util-linux) is not installed.")
        mode = UID
        argv = [bwrap, *_base_mounts(), "--unshare-pid", *_drop_to(low), "true"]
        description = (
            f"Workspaces are isolated: each runs as a uid of its own ({low}-{high}) in a "
            "bubblewrap sandbox that hides the portal's data directory."
        )
    else:
        mode = USERNS
        argv = [bwrap, "--unshare-user", *_base_mounts(), "--unshare-pid", "--", "true"]
        description = (
            "Workspaces are isolated in a bubblewrap sandbox (user namespace) that hides the "
            "portal's data directory; outside it they run as the portal's own user."
        )
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return Capability(NONE, f"The bubblewrap sandbox does not start here: {error}")
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return Capability(NONE, f"The bubblewrap sandbox does not start here: {why}")
    if network == "host":
        why_shared = "LOCAL_WORKSPACE_NETWORK=host"
    elif mode == UID:
        why_shared = _network_problem()
    else:
        why_shared = "a network of their own needs a portal running as root"
    if why_shared:
        description += (
            " The network is shared with the host: a workspace can connect to whatever the "
            f"host can ({why_shared})."
        )
        return Capability(mode, description)
    description += (
        " Each has a network of its own: it reaches neither the portal, its database nor "
        "another workspace, and its services are served on the host's 127.0.0.1."
    )
    why_closed = _egress_problem(egress, allowed, sources)
    if why_closed:
        return Capability(mode, f"{description} It reaches no internet: {why_closed}.", True)
    also = f", and {', '.join(allowed)}" if allowed else ""
    description += (
        " It reaches the internet only through an HTTPS proxy of its own: port 443 of public "
        f"addresses{also}."
    )
    return Capability(mode, description, own_network=True, egress=True, sources=sources)


def _egress_problem(egress: str, allowed: tuple[str, ...], sources: tuple[str, ...]) -> str:
    """Why workspaces with networks of their own get no way out ("" if they do)."""
    if egress == "off":
        return "LOCAL_WORKSPACE_EGRESS=off"
    for rule in allowed:
        try:
            relay.Allowed.parse(rule)
        except ValueError as error:
            return f"LOCAL_WORKSPACE_EGRESS_ALLOW is wrong ({error}); mend it to open the proxy"
    try:
        relay.parse_sources(list(sources))
    except ValueError as error:
        return f"LOCAL_WORKSPACE_EGRESS_SOURCE is wrong ({error})"
    return ""


def _source_problem(sources: tuple[str, ...]) -> str:
    """Why the proxy cannot leave from LOCAL_WORKSPACE_EGRESS_SOURCE now ("" if it can): it
    then refuses every connection rather than make it from the host's own address. Cheap
    (the kernel's tables and a bind), so made for each status."""
    if not sources:
        return ""
    try:
        own = relay.own_networks()
    except (OSError, ValueError) as error:
        return f"this host's addresses are unknown ({error})"
    why = relay.sources_problem(relay.parse_sources(list(sources)), own)
    if why:
        return (
            f"LOCAL_WORKSPACE_EGRESS_SOURCE is wrong ({why}), and its connections leave "
            "from nowhere else"
        )
    return ""


# -- networks -------------------------------------------------------------------------

NETNS_DIR = Path("/run/netns")  # where iproute2 keeps named network namespaces
RELAY = Path(__file__).with_name("relay.py")


def _network_problem() -> str:
    """Why workspaces cannot have network namespaces of their own here ("" if they can)."""
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"portal-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
        _ip("netns", "delete", probe)
    except OSError as error:
        return str(error)
    return ""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def network_name(workspace: Path) -> str:
    """The workspace's namespace name: from its directory, unique on the host even where
    two portals (or two test workers) have workspaces of the same name."""
    digest = hashlib.sha256(os.path.abspath(workspace).encode()).hexdigest()[:16]
    return f"portal-{digest}"


def network_prefix(workspace: Path) -> list[str]:
    """The command that runs the rest in the workspace's own network namespace, where only
    its loopback exists; [] where workspaces share the host's network.

    The namespace is made on first use, under the lock shared by every worker of this
    host, so every process of the workspace (its own and its services') joins the same
    one and they reach each other on 127.0.0.1.
    """
    path = network_path(workspace)
    if path is None:
        return []
    with directory_lock(workspace.parent):
        if not path.exists():
            try:
                _ip("netns", "add", path.name)
                _ip("-n", path.name, "link", "set", "lo", "up")
            except OSError as error:
                forget_network(workspace)  # never one without its loopback
                why = f"No network namespace for {workspace.name}."
                raise TransientError(why, str(error)) from error
    return [shutil.which("nsenter") or "nsenter", f"--net={path}", "--"]


def network_path(workspace: Path) -> Path | None:
    """Where the workspace's network namespace is (or will be); None where workspaces
    share the host's network."""
    if not host_capability().own_network:
        return None
    return NETNS_DIR / network_name(workspace)


def forget_network(workspace: Path) -> None:
    """Remove the workspace's namespace (processes still in it keep it until they end)."""
    if (NETNS_DIR / network_name(workspace)).exists():
        with contextlib.suppress(OSError):
            _ip("netns", "delete", network_name(workspace))


def _hosts_file() -> Path:
    """/etc/hosts for a workspace's own network, where the host's addresses do not exist:
    the host's name is the loopback there, for what looks its own address up by name (a
    Ray driver does, to find the Ray node it runs on)."""
    text = (
        f"127.0.0.1\tlocalhost {socket.gethostname()}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    path = Path(settings.DATA_DIR) / "sandbox-hosts"
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return path
    staged = path.with_name(f".sandbox-hosts.{os.getpid()}")
    staged.write_text(text)
    os.replace(staged, path)
    return path


def relayed(argv: list[str], listener_fd: int, port: int) -> list[str]:
    """`argv` behind the relay that serves its port on the host (`pools/relay.py`)."""
    return [sys.executable, "-I", str(RELAY), str(listener_fd), str(port), "--", *argv]


def egress_rules() -> tuple[list[str], list[str]]:
    """(sources, exceptions) a proxy started now runs with: LOCAL_WORKSPACE_EGRESS_SOURCE
    and LOCAL_WORKSPACE_EGRESS_ALLOW."""
    sources = getattr(settings, "LOCAL_WORKSPACE_EGRESS_SOURCE", ())
    return list(sources), list(getattr(settings, "LOCAL_WORKSPACE_EGRESS_ALLOW", ()))


def egress_argv(listener_fd: int) -> list[str]:
    """The workspace's HTTPS proxy, serving `egress_listener` (`pools/relay.py`)."""
    sources, allowed = egress_rules()
    options = [word for source in sources for word in ("--source", source)]
    return [sys.executable, "-I", str(RELAY), "--egress", *options, str(listener_fd), *allowed]


def old_egress_rules(argv: list[str]) -> str:
    """How the rules of a proxy started with `argv` (`egress_argv`, as it was then) differ
    from those it would be started with now, in words; "" when they do not."""
    _, sources, allowed = relay.egress_options(argv[argv.index("--egress") + 1 :])
    sources_now, allowed_now = egress_rules()
    differences = []
    if sources != sources_now:
        then, now = (" and ".join(s) or "this host's address" for s in (sources, sources_now))
        differences.append(f"its connections leave from {then}, where the settings now say {now}")
    if allowed != allowed_now:
        then, now = (", ".join(a) or "none" for a in (allowed, allowed_now))
        differences.append(f"its exceptions are {then}, where the settings now say {now}")
    return "; ".join(differences)


# Run in the workspace's network: listen on 127.0.0.1:PORT and hand the socket back over
# FD. Listening already, so a connection made before the proxy runs waits for it.
_BIND_INSIDE = """
import socket, sys
channel = socket.socket(fileno=int(sys.argv[1]))
listener = socket.socket()
# A proxy replaced leaves its closed connections in TIME_WAIT on the port; a listener still
# there (another proxy, or the workspace's own) keeps it taken all the same.
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[2])))
listener.listen(128)
socket.send_fds(channel, [b"socket"], [listener.fileno()])
"""


def egress_listener(workspace: Path) -> socket.socket:
    """A socket listening on 127.0.0.1:EGRESS_PORT in the workspace's network, for its proxy,
    which runs in the host's (a socket stays in the namespace it was made in).

    OSError when it cannot be made, EADDRINUSE when a proxy (or the workspace) has it.
    """
    path = network_path(workspace)
    if path is None or not path.exists():
        raise OSError(f"{workspace.name} has no network of its own")
    ours, theirs = socket.socketpair()
    with ours, theirs:
        argv = [shutil.which("nsenter") or "nsenter", f"--net={path}", "--", sys.executable]
        argv += ["-I", "-c", _BIND_INSIDE, str(theirs.fileno()), str(relay.EGRESS_PORT)]
        done = subprocess.run(
            argv, pass_fds=(theirs.fileno(),), capture_output=True, text=True, timeout=20
        )
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            in_use = "Address already in use" in why
            raise OSError(errno.EADDRINUSE if in_use else errno.EIO, why)
        ours.settimeout(5)
        _, fds, _, _ = socket.recv_fds(ours, 16, 1)
    listener = socket.socket(fileno=fds[0])
    listener.set_inheritable(False)  # received inheritable: only its proxy may have it
    return listener


# -- identities -----------------------------------------------------------------------


def identity_of(directory: Path) -> int | None:
    """The workspace's own uid (the owner of its directory), or None when it has none."""
    low, high = uid_range()
    with contextlib.suppress(FileNotFoundError):
        owner = os.lstat(directory).st_uid
        if low <= owner <= high:
            return owner
    return None


def prepare(directory: Path) -> int | None:
    """Make `directory` the workspace's own (mode 0700); its uid in "uid" mode, else None.

    In "uid" mode a directory not yet owned by a workspace uid (new, or made before
    isolation was on) gets the lowest free uid of the range, under a lock shared by every
    worker of this host: free means no directory in the root has it, no process runs as
    it, and no account or group of the host has that number.
    """
    mode = host_capability().mode
    if mode == NONE:
        return None
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise PermanentError(f"{directory} is not a directory.")
    uid = None
    if mode == UID:
        uid = identity_of(directory)
        if uid is None:
            with directory_lock(directory.parent):
                uid = identity_of(directory) or _free_uid(directory.parent)
                _chown_tree(directory, uid)
    os.chmod(directory, 0o700)
    return uid


@contextlib.contextmanager
def directory_lock(root: Path):
    """An exclusive flock on the workspaces root directory itself (no file of its own),
    shared by every worker of this host; no workspace can reach it to hold it. Not
    re-entrant: a holder must not take it again."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _free_uid(root: Path) -> int:
    taken = set(_process_uids())
    with os.scandir(root) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                taken.add(entry.stat(follow_symlinks=False).st_uid)
    low, high = uid_range()
    for uid in range(low, high + 1):
        if uid not in taken and not _is_account(uid):
            return uid
    raise TransientError(
        f"Every workspace uid ({low}-{high}) is in use: delete workspaces or widen "
        "LOCAL_WORKSPACE_UID_MIN/MAX."
    )


def _is_account(uid: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


def _chown_tree(directory: Path, uid: int) -> None:
    """Give the tree to `uid`, never following a link."""
    os.lchown(directory, uid, uid)
    for parent, dirs, files in os.walk(directory, followlinks=False):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(parent, name), uid, uid)


def open_directory(directory: Path) -> int:
    """An fd of `directory`. Inside a workspace every step from the workspace's own
    directory is taken without following links: a link the workspace planted (say
    `services` -> /etc) must not lead the portal's writes, reads or chowns elsewhere."""
    workspace = workspace_of(directory)
    flags = os.O_RDONLY | os.O_DIRECTORY
    if workspace is None:
        return os.open(directory, flags)
    relative = Path(os.path.abspath(directory)).relative_to(workspace)
    fd = os.open(workspace, flags | os.O_NOFOLLOW)
    try:
        for part in relative.parts:
            try:
                child = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as error:
                why = f"{directory}: {part} is not a directory of the workspace"
                raise OSError(why) from error
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def hand_over(workspace: Path, cwd: Path, uid: int | None) -> None:
    """Give the portal-made directories between the workspace and `cwd` (e.g. a service's
    `services/<code>`) to the workspace's uid, so its process can write there; each step
    is reached without following links (`open_directory`)."""
    relative = Path(os.path.abspath(cwd)).relative_to(os.path.abspath(workspace))
    for depth in range(1, len(relative.parts) + 1):
        fd = open_directory(workspace.joinpath(*relative.parts[:depth]))
        try:
            if uid is not None and os.fstat(fd).st_uid != uid:
                os.fchown(fd, uid, uid)
        finally:
            os.close(fd)


def kill_identity(uid: int) -> int:
    """SIGKILL every process running as `uid` (all of one workspace); how many there were."""
    killed = set()
    for _ in range(50):
        found = [pid for pid, owners in _processes() if uid in owners]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.1)
    return len(killed)


def _processes():
    """(pid, {real, effective uid}) of every process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Bytes: its Name line is the process's own choice (/proc/self/comm), UTF-8 or not.
            status = (entry / "status").read_bytes()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith(b"Uid:"):
                real, effective = line.split()[1:3]
                yield int(entry.name), {int(real), int(effective)}
                break


def _process_uids():
    for _pid, owners in _processes():
        yield from owners


# -- the sandbox ----------------------------------------------------------------------


def _base_mounts(tmp_fd: int | None = None) -> list[str]:
    """The host read-only, /tmp the workspace's own (`tmp_fd`, else an empty one), a
    private /dev and /proc."""
    tmp = ["--bind-fd", str(tmp_fd), "/tmp"] if tmp_fd is not None else ["--tmpfs", "/tmp"]
    dev = ["--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm", "--proc", "/proc"]
    return ["--ro-bind", "/", "/", *tmp, *dev]


def private_tmp(workspace: Path, uid: int | None) -> int:
    """An fd of the workspace's own /tmp (`TMP_DIR` in its directory, made here and given
    to `uid`), for `sandbox_argv`. The sandbox binds the fd, not the path: the workspace
    owns the directory and may replace it by a link at any moment, which must not bind
    another directory into its view. A link or file in its place is the workspace's own
    doing, so it is removed and the directory made again."""
    parent = open_directory(workspace)
    try:
        for _ in range(2):
            with contextlib.suppress(FileExistsError):
                os.mkdir(TMP_DIR, 0o700, dir_fd=parent)
            try:
                fd = os.open(TMP_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
                break
            except OSError as error:  # ELOOP: a link; ENOTDIR: a file
                if error.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                os.unlink(TMP_DIR, dir_fd=parent)
        else:
            raise TransientError(f"{workspace / TMP_DIR} keeps being replaced by a link.")
    finally:
        os.close(parent)
    if uid is not None and os.fstat(fd).st_uid != uid:
        os.fchown(fd, uid, uid)
    return fd


def host_path(workspace: Path, seen: Path) -> Path:
    """Where a path that the workspace's processes see lies on the host: their /tmp is
    the workspace's `TMP_DIR` where the host isolates them; anything else is the same."""
    if not host_capability().isolated:
        return seen
    try:
        return workspace / TMP_DIR / Path(seen).relative_to("/tmp")
    except ValueError:
        return seen


def _drop_to(uid: int) -> list[str]:
    """bwrap runs as root to mount; setpriv then becomes the workspace's uid for good."""
    return [
        "--cap-add",
        "CAP_SETUID",
        "--cap-add",
        "CAP_SETGID",
        "--",
        shutil.which("setpriv") or "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]


def hidden_paths() -> list[Path]:
    """What a sandbox must not see: the data directory, every workspace, the SQLite
    database and the portal's .env file; with a network of its own, /run, where the
    host's services have their Unix sockets."""
    paths = [Path(settings.DATA_DIR), workspaces_root()]
    database = settings.DATABASES["default"]
    name = str(database.get("NAME") or "")
    if database["ENGINE"].endswith("sqlite3") and name.startswith("/"):
        paths += [Path(name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    paths.append(Path(settings.BASE_DIR) / ".env")
    if host_capability().own_network:  # the host's Unix sockets (e.g. PostgreSQL's) too
        paths.append(Path("/run"))
    if os.geteuid() != 0:  # userns: the portal's own files are readable unless hidden
        home = Path.home()
        if not any(_within(p, home) for p in _needed_paths()):
            paths.append(home)
    return [Path(os.path.abspath(p)) for p in paths]


def _needed_paths() -> list[Path]:
    """What every sandboxed process needs to read: the portal's code, its virtualenv and
    the interpreter behind it."""
    paths = {Path(settings.BASE_DIR), Path(sys.prefix), Path(sys.base_prefix)}
    paths.add(Path(os.path.realpath(sys.executable)).parent.parent)
    return sorted(Path(os.path.abspath(p)) for p in paths)


def _within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _untraversable_ancestor(path: Path) -> Path | None:
    """The topmost directory above `path` that other users may not enter, if any."""
    for ancestor in reversed(path.parents):
        if ancestor == Path("/"):
            continue
        try:
            mode = os.stat(ancestor).st_mode
        except OSError:
            return None
        if not mode & stat.S_IXOTH:
            return ancestor
    return None


def sandbox_argv(
    argv: list[str],
    workspace: Path,
    cwd: Path,
    uid: int | None,
    tmp_fd: int,
    devices: Sequence[str] = (),
    host_network: bool = False,
    die_with_parent: bool = False,
) -> list[str]:
    """`argv` wrapped in bubblewrap (see the module's docstring); `tmp_fd` is the
    workspace's /tmp (`private_tmp`, passed to bubblewrap), `devices` the device nodes it
    may open (`pools.devices.nodes_for` its GPUs). `host_network`: it runs in the host's
    network (the workspace's HTTPS proxy), so it resolves names as the host does.
    `die_with_parent`: killing bubblewrap kills what runs inside too (a one-off check that
    timed out), which a sandbox's own PID namespace otherwise keeps alive.

    Where the portal's files lie under /tmp (the test suite's do), bubblewrap makes the
    directories leading to their mount points inside the workspace's /tmp: a link the
    workspace plants there moves them within its own view only."""
    workspace = Path(os.path.abspath(workspace))
    hidden = hidden_paths()
    operations: list[tuple[Path, list[str]]] = []
    for path in hidden:
        if path.is_dir() and not path.is_symlink():
            operations.append((path, ["--tmpfs", str(path)]))
        elif path.exists():
            operations.append((path, ["--ro-bind", "/dev/null", str(path)]))
    bring_back = []
    if uid is not None:  # another uid: replace what it cannot enter by an empty directory
        for needed in [*_needed_paths(), workspace]:
            ancestor = _untraversable_ancestor(needed)
            if ancestor is not None:
                operations.append((ancestor, ["--tmpfs", str(ancestor)]))
                if needed != workspace:
                    bring_back.append(needed)
    for needed in bring_back:
        if not any(_within(needed, h) for h in hidden):
            operations.append((needed, ["--ro-bind", str(needed), str(needed)]))
    operations.append((workspace, ["--bind", str(workspace), str(workspace)]))
    # Parents before children: a later mount goes inside an earlier empty directory, where
    # the directories leading to it are made traversable (bwrap would copy their modes).
    emptied: list[Path] = []
    made, seen, mounts = set(), set(), []
    for path, args in sorted(operations, key=lambda item: len(item[0].parts)):
        if tuple(args) in seen:
            continue
        seen.add(tuple(args))
        inside = [e for e in emptied if path != e and _within(path, e)]
        if inside:
            deepest = max(inside, key=lambda e: len(e.parts))
            for parent in reversed(path.parents):
                if _within(parent, deepest) and parent != deepest and parent not in made:
                    made.add(parent)
                    mounts += ["--perms", "0755", "--dir", str(parent)]
        if args[0] == "--tmpfs":
            emptied.append(path)
        mounts += args
    for device in devices:
        mounts += ["--dev-bind", device, device]
    if host_network:
        mounts += resolver_mounts()
    elif host_capability().own_network:
        mounts += ["--ro-bind", str(_hosts_file()), "/etc/hosts"]
    command = [shutil.which("bwrap") or "bwrap", *_base_mounts(tmp_fd), *mounts]
    if die_with_parent:
        command.append("--die-with-parent")
    command += ["--unshare-pid", "--unshare-ipc", "--chdir", os.path.abspath(cwd)]
    if uid is not None:
        command += _drop_to(uid)
    else:
        command += ["--unshare-user", "--"]
    return command + list(argv)


def resolver_mounts(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The directory of the host's resolver configuration where resolv.conf links into
    one the sandbox empties (systemd-resolved keeps it in /run), read-only; else none."""
    target = Path(os.path.realpath(resolv_conf))
    if target == resolv_conf or not target.exists():
        return []
    return ["--ro-bind", str(target.parent), str(target.parent)]


def sandbox_env(env: dict[str, str], workspace: Path) -> dict[str, str]:
    """The caller's environment without what it inherited from the portal's own; where
    workspaces have a way out of their network, the proxy variables that lead to it."""
    kept = {
        key: value
        for key, value in env.items()
        if key in PASSED or key in WORKSPACE_KEYS or os.environ.get(key) != value
    }
    name = workspace.name
    kept |= {"HOME": str(workspace), "USER": name, "LOGNAME": name}
    if host_capability().egress:
        proxy = f"http://127.0.0.1:{relay.EGRESS_PORT}"
        kept |= {key: proxy for key in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")}
        own = f"localhost,127.0.0.1,::1,{socket.gethostname()}"  # its services (`_hosts_file`)
        kept |= {key: own for key in ("no_proxy", "NO_PROXY")}
    return kept
