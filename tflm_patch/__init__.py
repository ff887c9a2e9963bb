"""tflm-patch: patch-based execution of a CNN's memory-heavy first stage in stock TFLM."""
__version__ = "0.1.0"
