"""edgemobile: mobile image classifiers from Keras + ImageNet weights to honest int8 TFLite.

``import edgemobile as em`` gives the Python API (:mod:`edgemobile.api`), a function per
command: ``em.convert``, ``em.evaluate``, ``em.predict``, ``em.bundle``, ``em.bench``,
``em.inspect``, ``em.report``, ``em.info``, ``em.models``. Importing it imports no TensorFlow
(converting does, when called).
"""

from edgemobile.api import (
    BenchResult,
    BundleResult,
    Converted,
    Evaluation,
    InspectResult,
    ModelRequest,
    Predictions,
    ReportResult,
    bench,
    bundle,
    convert,
    evaluate,
    info,
    inspect,
    models,
    predict,
    report,
)
from edgemobile.version import __version__

__all__ = ["__version__", "convert", "evaluate", "predict", "bundle", "bench", "inspect", "report", "info", "models",
           "ModelRequest", "Converted", "Evaluation", "Predictions", "BundleResult", "BenchResult", "InspectResult",
           "ReportResult"]
