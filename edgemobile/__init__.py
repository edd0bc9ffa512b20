"""edgemobile: mobile image classifiers from Keras + ImageNet weights to honest int8 TFLite."""

__version__ = "0.1.0"
