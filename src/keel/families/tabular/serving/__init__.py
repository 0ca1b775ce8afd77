"""The tabular server's parts, mounted on the serving core by ``families/tabular/serve.py``.

``served`` (the loaded package and the alias watcher of champion, shadow and canary),
``state`` (the one answer path: A/B arm, canary share, the log, the shadow), ``fast``
(the compiled input path), ``routes_predict`` (``/predict``, ``/explain``,
``/feedback``) and ``routes_v2`` / ``v2`` (the Open Inference Protocol).
"""
