"""Join control groups, then run a command: `cgroup_join.py PROCS... -- COMMAND...`.

Each PROCS is a group's `cgroup.procs` file (`pools.cgroups.join_argv`). This process moves
itself into every one before it executes COMMAND, so COMMAND and everything it forks are
inside the workspace's limits from their first instruction: moving a process there after
it started would leave out whatever it forked in between.

It uses the standard library only, and runs as root (it must, to join), before the
sandbox drops to the workspace's uid.
"""

import os
import sys


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit(__doc__.splitlines()[0])
    split = argv.index("--")
    procs, command = argv[:split], argv[split + 1 :]
    if not procs or not command:
        raise SystemExit(__doc__.splitlines()[0])
    for path in procs:
        with open(path, "w") as joined:
            joined.write(str(os.getpid()))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
