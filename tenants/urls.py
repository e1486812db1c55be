from django.urls import path

from tenants import views

app_name = "tenants"
urlpatterns = [path("tickets", views.tickets_create, name="tickets")]
