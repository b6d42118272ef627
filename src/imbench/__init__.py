"""imbench: reproducible benchmarks of class-imbalance methods for medical image classification."""

__version__ = "0.1.0"

#: The plug-in API (docs/plugins.md, docs/extending.md), imported on first use so that
#: ``import imbench`` stays light while the workflow plans: name -> the module that defines it.
_API = {
    "register_method": "plugins",
    "register_dataset": "plugins",
    "register_model_family": "plugins",
    "Param": "params",
    "DatasetSpec": "data.registry",
    "Task": "data.registry",
    "Option": "data.registry",
    "published": "data.registry",
    "ModelFamily": "model_names",
    "ModelSpec": "model_names",
}

__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'imbench' has no attribute {name!r}")
