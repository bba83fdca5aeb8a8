"""Operating a deployment: health checks (``health``) and the read models behind the
dashboard and the metrics (``monitor``).

Imports ``client`` and below.
"""
