"""tfstyle: a TensorFlow/Keras model zoo for neural audio style transfer."""

import os

# TensorFlow's C++ start-up chatter (CPU feature notes, missing CUDA) drowns our own output; users can still
# raise it by setting the variable themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tfstyle.registry import build_model, list_models  # noqa: E402  (after the logging default above)

__version__ = "0.1.0"
__all__ = ["build_model", "list_models", "load_model", "__version__"]


def load_model(model: str, *, untrained: bool = False):
    """A zoo name (its shipped SavedModel) or a SavedModel path, ready to use; see tfstyle.loading.load_model."""
    from tfstyle import loading  # Deferred: it imports TensorFlow, which `import tfstyle` alone does not need.

    return loading.load_model(model, untrained=untrained)
