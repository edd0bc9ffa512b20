"""edgemobile: mobile image classifiers from Keras + ImageNet weights to honest int8 TFLite.

``import edgemobile as em`` gives the Python API (:mod:`edgemobile.api`), a function per
command: ``em.convert``, ``em.evaluate``, ``em.predict``, ``em.bundle``, ``em.bench``,
``em.inspect``, ``em.report``, ``em.info``, ``em.models``. They are loaded on first use, so
importing the package stays light (and never imports TensorFlow).
"""

from edgemobile.version import __version__

_API = ("convert", "evaluate", "predict", "bundle", "bench", "inspect", "report", "info", "models", "ModelRequest",
        "Converted", "Evaluation", "Predictions", "BundleResult", "BenchResult", "InspectResult", "ReportResult")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from edgemobile import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgemobile' has no attribute {name!r}")
