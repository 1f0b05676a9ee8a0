"""Console routes for PodProtectors and the cluster overview."""

from django.urls import path

from protectors import views

app_name = "console"

urlpatterns = [
    path("", views.overview, name="overview"),
]
