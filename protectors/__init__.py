"""PodProtectors: the Django app for the console, and the pure domain core beside it.

The domain modules (model, selectors, health, aggregation, summarize, quota, specs, ...) import
nothing from Django so the webhook and the controllers can use them without a configured site.
"""
