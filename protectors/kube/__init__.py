"""Kubernetes access shared by the webhook and the controllers: a dict-based client and the
watch-based informer cache (one implementation of list + watch + index in the project)."""
