

from decimal import Decimal

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='Tenant',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text='Cannot be changed once created.', max_length=63, unique=True, validators=[django.core.validators.RegexValidator('^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$', 'Letters, digits and _ . - (at most 63, starting with a letter or digit).')])),
                ('enabled', models.BooleanField(default=True, help_text='Off: its tickets are refused and its open sessions closed (4401).')),
                ('max_sessions', models.PositiveIntegerField(blank=True, help_text='Open sessions at once; empty = unlimited.', null=True)),
                ('audio_minutes_per_day', models.DecimalField(blank=True, decimal_places=2, help_text='Audio placed on nodes per UTC day; empty = unlimited.', max_digits=12, null=True, validators=[django.core.validators.MinValueValidator(Decimal('0'))])),
                ('allowed_origins', models.TextField(blank=True, help_text="Origins allowed to open its sessions, one per line or comma-separated (e.g. https://app.example.com); empty = the server's ALLOWED_ORIGINS.")),
                ('notes', models.TextField(blank=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.CreateModel(
            name='TenantKey',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key_id', models.CharField(editable=False, max_length=40, unique=True)),
                ('sealed_secret', models.TextField(editable=False)),
                ('label', models.CharField(blank=True, max_length=100)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('last_used_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='keys', to='tenants.tenant')),
            ],
            options={
                'verbose_name': 'tenant key',
                'ordering': ['tenant__name', 'created_at'],
            },
        ),
        migrations.CreateModel(
            name='TenantUsage',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('tenant', models.CharField(db_index=True, max_length=63)),
                ('day', models.DateField()),
                ('sessions', models.PositiveBigIntegerField(default=0, help_text='sessions opened')),
                ('jobs', models.PositiveBigIntegerField(default=0, help_text='utterances that became jobs')),
                ('results', models.PositiveBigIntegerField(default=0)),
                ('missing', models.PositiveBigIntegerField(default=0)),
                ('errors', models.PositiveBigIntegerField(default=0)),
                ('cancelled', models.PositiveBigIntegerField(default=0)),
                ('audio_ms', models.PositiveBigIntegerField(default=0, help_text='audio placed on nodes, ms')),
                ('audio_ms_result', models.PositiveBigIntegerField(default=0, help_text='audio of jobs that got a result, ms')),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'verbose_name': 'usage per day',
                'verbose_name_plural': 'usage per day',
                'ordering': ['-day', 'tenant'],
                'constraints': [models.UniqueConstraint(fields=('tenant', 'day'), name='tenant_usage_one_row_per_day')],
            },
        ),
    ]
