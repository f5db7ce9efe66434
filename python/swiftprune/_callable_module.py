"""Modules that are also their main function.

``swiftprune.plan`` is both the module (``swiftprune.plan.Plan``) and the
function (``swiftprune.plan(weights, target_ratio=6)``); the same for
``swiftprune.sensitivity``. A package attribute cannot be both, so the
module object itself becomes callable and forwards to the function.
"""
from __future__ import annotations

import sys
import types
from typing import Any, Callable


def make_callable(module_name: str, function: Callable[..., Any]) -> None:
    """Makes ``sys.modules[module_name](...)`` call ``function(...)``."""
    module = sys.modules[module_name]

    class CallableModule(types.ModuleType):
        __doc__ = function.__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

    module.__class__ = CallableModule
