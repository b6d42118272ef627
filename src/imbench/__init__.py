"""imbench: reproducible benchmarks of class-imbalance methods for medical image classification."""

__version__ = "0.1.0"

__all__ = ["Param", "register_method"]


def __getattr__(name):
    # The plug-in API (docs/plugins.md), imported on first use: ``imbench.register_method`` and
    # ``imbench.Param`` (a method parameter's declaration).
    if name == "register_method":
        from .plugins import register_method

        return register_method
    if name == "Param":
        from .params import Param

        return Param
    raise AttributeError(f"module 'imbench' has no attribute {name!r}")
