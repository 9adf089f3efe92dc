"""`dilated_conv_ae`: `conv_ae` with its first layer dilated over time and frequency.

The dilated layer keeps stride 1 (Keras cannot stride and dilate at once) and sees a wider context for less local
texture, the improvement the VCTK speech style-transfer report found helpful.
"""

from tfstyle import configs, registry
from tfstyle.models.conv_ae import ConvAE


@registry.register_model("dilated_conv_ae", configs.DilatedConvAEConfig)
class DilatedConvAE(ConvAE):
    """`conv_ae` with a dilated first layer; the arguments are those of `ConvAE` (its config dilates by 2)."""
