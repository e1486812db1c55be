"""``/dashboard/``: the staff dashboard and its job lookup."""

from django.urls import path

from nodes import views

app_name = "dashboard"
urlpatterns = [
    path("", views.dashboard, name="index"),
    path("jobs/", views.job_lookup, name="jobs"),
    path("jobs/<str:job_id>/", views.job_detail, name="job"),
]
