"""The zoo: importing this package registers every model with tfstyle.registry (one module per zoo entry)."""

from tfstyle.models import (content_encoder, conv_ae, conv_vae, dilated_conv_ae, random_cnn,  # noqa: F401
                            seq2seq_lstm_ae, spectrogram, speaker_encoder, style_encoder, timbre_encoder)
