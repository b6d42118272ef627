"""imbench: reproducible benchmarks of class-imbalance methods for medical image classification."""

__version__ = "0.1.0"
