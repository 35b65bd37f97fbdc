"""Name -> factory registries for data formats, models, mixers, losses and inference engines (timm's decorator-plus-factory idea).

A component registers itself under a name; runs store the name, and a checkpoint rebuilds its
model from the name and the keyword arguments saved beside the weights.

Example:
    >>> from mix2.registry import Registry
    >>> SHAPES = Registry("shape")
    >>> @SHAPES.register("square")
    ... def square(side: float = 1.0) -> float:
    ...     return side * side
    >>> SHAPES.create("square", side=3.0)
    9.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mix2.errors import Mix2Error

F = TypeVar("F", bound=Callable[..., Any])


class Registry:
    """A table of factories for one kind of component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator that registers ``factory`` under ``name``; a name can be taken once."""

        def decorator(factory: F) -> F:
            if name in self._factories:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build the component registered as ``name`` with ``kwargs``."""
        if name not in self._factories:
            raise Mix2Error(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}")
        return self._factories[name](**kwargs)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories)

    def entries(self) -> list[tuple[str, Any]]:
        """``(name, what was registered)``, in the order of registration."""
        return list(self._factories.items())


DATA_FORMATS = Registry("data format")
MODELS = Registry("model")
LOSSES = Registry("loss")
MIXERS = Registry("mixer")
ENGINES = Registry("inference engine")
