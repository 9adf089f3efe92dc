"""The zoo: importing this package registers every model with tfstyle.registry (one module per zoo entry)."""

from tfstyle.models import (conv_ae, conv_vae, dilated_conv_ae, random_cnn, seq2seq_lstm_ae,  # noqa: F401
                            spectrogram, speaker_encoder, style_encoder, timbre_encoder)
