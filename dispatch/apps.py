from django.apps import AppConfig


class DispatchConfig(AppConfig):
    name = "dispatch"
    verbose_name = "Dispatch (live state)"

    def ready(self) -> None:
        from dispatch.config import pools_publish
        from pools.signals import pools_changed

        def republish(**_kwargs: object) -> None:
            pools_publish()

        pools_changed.connect(republish, dispatch_uid="dispatch.republish", weak=False)
