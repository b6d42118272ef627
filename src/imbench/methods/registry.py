"""The method registry itself: :class:`Method`, the table of registered methods and its look-ups.

A leaf module (it imports nothing of imbench): the registration API of
:mod:`imbench.methods.api`, the built-in methods of :mod:`imbench.methods` and its ``builtin``
modules, and the configuration checks all read and write the one table :data:`METHODS` here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    family: str  # baseline | data | loss | post-hoc | hybrid | loss+schedule | data+schedule
    loss: str
    sampler: str = "shuffle"
    head: str = "linear"
    posthoc: str | None = None
    base: str | None = None  # post-hoc / second-stage methods: the cell reused
    variant_of: str | None = None  # a paper's exact form of this method (paper variants only)
    source: str = ""
    summary: str = ""
    stage2: str | None = None  # a second stage on the base cell's network (crt, lws, tau_norm)
    mixing: str | None = None  # a mixing augmentation of the training step (mixup, remix)

    @property
    def trains(self) -> bool:
        """Whether the method has a training job of its own (post-hoc and second-stage methods
        reuse their base cell's; a second stage has its own, lighter ``decouple`` job)."""
        return self.posthoc is None and self.stage2 is None


METHODS: dict[str, Method] = {}


#: Words of the configuration's ``methods`` list that stand for a group of registered methods,
#: expanded in registration order by :func:`expand_methods` before any check. No method may take
#: one of these names.
METHOD_GROUPS: dict[str, str] = {
    "all": "every registered method except the paper variants",
    "variants": "every paper variant (variant_of set)",
}


def register_method(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} registered twice")
    if method.name in METHOD_GROUPS:
        raise ValueError(
            f"method {method.name!r}: the name stands for a group of methods in 'methods' "
            f"({METHOD_GROUPS[method.name]}); choose another name"
        )
    if method.head not in ("linear", "cosine"):
        raise ValueError(
            f"method {method.name!r}: head {method.head!r} is not 'linear' or 'cosine'"
        )
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {list(METHODS)}") from None


def list_methods(variants: bool = True) -> list[str]:
    """Registered method names, in registration order; ``variants=False`` leaves out paper variants."""
    return [name for name, m in METHODS.items() if variants or m.variant_of is None]


def expand_methods(names: list) -> list:
    """``names`` with each group word of :data:`METHOD_GROUPS` replaced by its methods, in
    registration order (``all``: every method except the paper variants; ``variants``: every paper
    variant). Other entries are kept as they are (the configuration checks judge them). A method
    named twice, directly or through a group, raises one ``ValueError`` naming it."""
    out: list = []
    for name in names:
        if name == "all":
            group = list_methods(variants=False)
        elif name == "variants":
            group = [m for m in list_methods() if METHODS[m].variant_of is not None]
        else:
            group = [name]
        for m in group:
            if m in out:
                via = f" (the group {name!r} includes it)" if name != m else ""
                raise ValueError(f"method {m!r} is listed twice{via}")
            out.append(m)
    return out
