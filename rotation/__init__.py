"""Customer-managed key rotation for Azure Machine Learning and everything that depends on it."""

__version__ = "0.1.0"
