"""Shipping models: Android asset bundles (:mod:`edgemobile.deploy.bundle`, needs the
converter install only when it converts), what MediaPipe's ImageClassifier accepts
(:mod:`edgemobile.deploy.mediapipe_compat`) and the device benchmark
(:mod:`edgemobile.deploy.bench`, runtime install: numpy + a TFLite interpreter)."""
