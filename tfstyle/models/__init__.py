"""The zoo: importing this package registers every model with tfstyle.registry."""

from tfstyle.models import conv_ae, conv_vae, random_cnn, seq2seq_lstm_ae  # noqa: F401
