"""Store each AWS entry's EKS cluster name in its settings.

An entry without one used `gpu-paas-<slug of its current name>`, recomputed on every call,
so a rename moved it to another cluster and stranded the node groups running on the old
one. From now on the name is stored at the first save; this stores the name each existing
entry's node groups run on today.
"""

from django.db import migrations
from django.utils.text import slugify


def pin_cluster_names(apps, schema_editor):
    Infrastructure = apps.get_model("profiles", "Infrastructure")
    for entry in Infrastructure.objects.filter(kind="public_cloud", provider="aws"):
        credentials = entry.credentials or {}
        if credentials.get("cluster_name"):
            continue
        # The rule of `profiles.aws_checks.eks_cluster_name` as it stood: the driver's name.
        entry.credentials = credentials | {"cluster_name": f"gpu-paas-{slugify(entry.name)}"[:100]}
        entry.save(update_fields=["credentials"])


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0008_resource_and_pool_size_maxima"),
    ]

    # Reversing keeps the stored names: the code before this reads a stored name first too.
    operations = [migrations.RunPython(pin_cluster_names, migrations.RunPython.noop)]
