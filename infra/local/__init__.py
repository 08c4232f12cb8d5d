"""The embedded one-machine stack: settings, service launchers and the ``Stack`` API.

``settings`` (endpoints, credentials), ``services`` (``Stack.up/down/status``), one module per
service (``objectstore``, ``mlflow_server``, ``triton``, ``dagster_dev``), ``process`` (detached
process groups and PID records), ``foreground`` (container entry point) and ``bench``.
"""
