"""Console routes of the console app: the drain planner's page.

The rest of the console's pages are still routed by protectors/urls.py (namespace ``console``).
"""

from django.urls import path

from console import views

app_name = "planner"

urlpatterns = [
    path("plan-drain/", views.plan_drain, name="plan-drain"),
]
