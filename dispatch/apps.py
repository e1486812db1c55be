from django.apps import AppConfig


class DispatchConfig(AppConfig):
    name = "dispatch"
    verbose_name = "Dispatch (live state)"

    def ready(self) -> None:
        from dispatch.config import pools_publish
        from dispatch.tenants import tenants_publish
        from pools.signals import pools_changed
        from tenants.signals import tenants_changed

        def republish(**_kwargs: object) -> None:
            pools_publish()

        def republish_tenants(**_kwargs: object) -> None:
            tenants_publish()

        pools_changed.connect(republish, dispatch_uid="dispatch.republish", weak=False)
        tenants_changed.connect(republish_tenants, dispatch_uid="dispatch.republish_tenants", weak=False)
