"""Task kinds: the one list every module checks a task's kind against.

``multiclass``: one label of K ≥ 3 classes per sample (softmax). ``binary``: one of 2 classes, a
2-class softmax problem with class 1 the positive one. ``multilabel``: any subset of K labels per
sample (one sigmoid per label). Tasks (:mod:`imbench.data.tasks`), methods
(:mod:`imbench.methods`), post-hoc rules and metrics read this module; none defines its own list.
"""

from __future__ import annotations

__all__ = ["KINDS", "SINGLE_LABEL"]

#: Every task kind, in the order messages and tables list them.
KINDS: tuple[str, ...] = ("multiclass", "binary", "multilabel")
#: The kinds with one label per sample (one softmax over the classes).
SINGLE_LABEL: tuple[str, ...] = ("multiclass", "binary")
