"""Small, neutral helpers that plumbing (``config``) and every app may use.

A library, not an app: it is not in ``INSTALLED_APPS``, has no models, and imports nothing from
``config`` or from any other package under ``apps`` (tests/test_layout.py checks it).
"""
