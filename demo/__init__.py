"""The local demo: `python -m demo` runs the product on sandbox clusters, and
`python -m demo.incident` plays an incident against it."""
