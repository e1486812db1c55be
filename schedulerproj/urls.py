from django.contrib import admin
from django.urls import include, path

from dispatch import metrics
from schedulerproj import health

urlpatterns = [
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("metrics", metrics.metrics),
    path("dashboard/", include("nodes.urls")),
    path("api/", include("tenants.urls")),
    path("admin/", admin.site.urls),
]
