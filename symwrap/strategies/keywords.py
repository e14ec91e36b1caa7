"""Hugging Face's calling convention on every strategy: ``model(pixel_values=x, labels=y)`` returns a
``ModelOutput`` with the training ``loss``, so ``transformers.Trainer`` trains a wrapped model unchanged.

:class:`~symwrap.strategies.SymmetricModel` passes each strategy's ``forward(x)`` through
:func:`keyword_forward` when the strategy class is defined: a positional call (``model(x)``) runs the
strategy's ``forward`` as it is and returns what it returns; the keywords switch to the Hugging Face
convention.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, MissingDependencyError

__all__ = ["HF_KEYWORDS", "keyword_forward", "model_output"]

#: the keywords :func:`keyword_forward` adds to a strategy's ``forward``
HF_KEYWORDS = ("pixel_values", "labels", "return_dict")


def keyword_forward(forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward(self, x)`` that also takes Hugging Face's keywords.

    ``forward(x)``: the strategy's own forward, unchanged. ``forward(pixel_values=x)`` (or ``forward(x,
    labels=y)``, ...): a ``ModelOutput`` with ``logits`` (the prediction) and, when ``labels`` are given,
    ``loss``: ``self.loss(logits, labels, x)["total"]``, the strategy's full training loss (the task term and
    its own terms). ``return_dict=False`` gives the tuple ``(loss, logits)`` (``(logits,)`` without labels).
    A ``forward`` that takes more than the input is returned as it is.
    """
    parameters = list(inspect.signature(forward).parameters.values())
    if getattr(forward, "_symwrap_keywords", False) or len(parameters) != 2:
        return forward

    @functools.wraps(forward)
    def wrapper(self: Any, x: Any = None, *, pixel_values: Any = None, labels: Any = None,
                return_dict: bool | None = None, **others: Any) -> Any:
        if others:
            raise ConfigError(f"{type(self).__name__} takes the input and Hugging Face's keywords "
                              f"{', '.join(k + '=' for k in HF_KEYWORDS)}; got {', '.join(k + '=' for k in others)}")
        if pixel_values is None and labels is None and return_dict is None:
            if x is None:
                raise ConfigError(f"{type(self).__name__} takes the input: model(x), or model(pixel_values=x) "
                                  "(Hugging Face's keyword); got neither")
            return forward(self, x)
        if x is not None and pixel_values is not None:
            raise ConfigError(f"{type(self).__name__} got the input twice, as x and as pixel_values=; pass one")
        inputs = pixel_values if pixel_values is not None else x
        if inputs is None:
            raise ConfigError(f"{type(self).__name__} got labels= or return_dict= but no input; pass "
                              "pixel_values=x as well")
        logits = forward(self, inputs)
        loss = self.loss(logits, labels, inputs)["total"] if labels is not None else None
        if return_dict is False:
            return (logits,) if loss is None else (loss, logits)
        return model_output(loss=loss, logits=logits)

    first = [parameters[0], parameters[1].replace(default=None)]
    keywords = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in HF_KEYWORDS]
    # what Trainer reads to find the labels; unknown keywords are refused with a ConfigError, not a TypeError
    wrapper.__signature__ = inspect.Signature(first + keywords + [inspect.Parameter("others",
                                                                                    inspect.Parameter.VAR_KEYWORD)])
    wrapper._symwrap_keywords = True
    return wrapper


@functools.lru_cache(maxsize=1)
def _output_class() -> type:
    try:
        from transformers.utils import ModelOutput
    except ImportError as error:
        raise MissingDependencyError("transformers", "hf", "model(pixel_values=..., labels=...)") from error
    import dataclasses

    @dataclasses.dataclass
    class SymmetricModelOutput(ModelOutput):
        """What a wrapped model returns to Hugging Face keywords: the training ``loss`` (with ``labels``) and
        the prediction ``logits``."""

        loss: Any = None
        logits: Any = None

    SymmetricModelOutput.__module__ = __name__
    SymmetricModelOutput.__qualname__ = "SymmetricModelOutput"
    return SymmetricModelOutput


def __getattr__(name: str) -> Any:
    if name == "SymmetricModelOutput":  # built on first use (transformers is optional); here for pickle
        return _output_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_output(loss: Any, logits: Any) -> Any:
    """A transformers ``ModelOutput`` holding ``loss`` (``None``: left out, as transformers does) and ``logits``."""
    return _output_class()(loss=loss, logits=logits)
