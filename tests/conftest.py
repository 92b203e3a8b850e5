"""Shared pytest set-up. Fixtures that several test folders use live in tests/*.py helpers
(models.py, media.py, rtsp.py) and are exposed here."""
