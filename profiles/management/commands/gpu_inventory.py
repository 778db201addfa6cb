"""Print this host's NVIDIA GPUs and their MIG state, read-only (`--json` for machines)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from profiles.mig.nvml import format_inventory, inventory


class Command(BaseCommand):
    help = "List this host's NVIDIA GPUs, MIG mode, MIG devices and profile tables via NVML."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        # A host without a driver is a normal case here, not an error: print why and exit 0.
        self.stdout.write(format_inventory(inventory(), as_json=options["json"]))
