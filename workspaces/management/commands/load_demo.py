from django.core.management.base import BaseCommand

from workspaces.demo import DEMO_ADMIN, DEMO_SCIENTIST, load_demo


class Command(BaseCommand):
    help = "Load the demo data (idempotent: running it again changes nothing)."

    def handle(self, *args, **options):
        result = load_demo()
        gpus = ", ".join(f"{n}× {m}" for m, n in result["local_gpus"].items()) or "none"
        self.stdout.write(self.style.SUCCESS("Demo data loaded."))
        self.stdout.write(f"  Local GPUs found by NVML: {gpus}")
        self.stdout.write(f"  Admin login:          {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}")
        self.stdout.write(f"  Data scientist login: {DEMO_SCIENTIST[0]} / {DEMO_SCIENTIST[1]}")
