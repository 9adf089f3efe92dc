"""The zoo: importing this package registers every model with tfstyle.registry."""

from tfstyle.models import random_cnn  # noqa: F401
