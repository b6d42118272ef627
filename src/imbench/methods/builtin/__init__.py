"""Methods defined each by one module of this package, found without being listed anywhere.

Every module here (file names not starting with ``_``) is imported when :mod:`imbench.methods` is,
in file-name order, after the methods of ``methods/__init__.py``. A module registers its method
through the same public API as a user's plug-in file (:func:`imbench.methods.api.register_method`,
also ``imbench.register_method``; docs/plugins.md): the function that builds the loss, its parameters
(each an :class:`imbench.Param`: type, range, default), the task kinds where it has a meaning, its
source and summary, all in one place. Everything else reads the registry: the configuration's
``methods: all``, the schema's name check, the parameter checks, the skip rule for task kinds,
``imbench plan``, the training job, the tables of docs/methods.md (``python -m imbench.docs``) and
the tests' grid sizes. Adding a method with a new loss is therefore one new module here and its
test.

The workflow imports the registry while it plans, which must not import torch: a module imports
torch inside the function that builds the loss, not at its top.
"""

from __future__ import annotations

import importlib
import pkgutil

#: The modules found and imported, in import order.
MODULES: list[str] = []

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
        MODULES.append(_info.name)
