from django.db import migrations


def create_public(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    Tenant.objects.get_or_create(
        name="public",
        defaults={"notes": "Built in: every session belongs to it while SCHEDULER_SESSION_AUTH is open."},
    )


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]

    operations = [migrations.RunPython(create_public, migrations.RunPython.noop)]
