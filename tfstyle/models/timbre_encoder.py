"""`timbre_encoder`: speaker_encoder's network trained to tell instruments apart from one second of music.

The same learnt filterbank, three dilated 1-D convolutions and mean/spread embedding, at 22.05 kHz with a
2048-point STFT, trained as a classifier over 110 General MIDI programs that all play the same random melodies
(training/make_instruments.py), so that only the timbre tells them apart. Its layers are style features.
"""

from tfstyle import configs, registry
from tfstyle.models.speaker_encoder import SpeakerEncoder


@registry.register_model("timbre_encoder", configs.TimbreEncoderConfig)
class TimbreEncoder(SpeakerEncoder):
    """Instrument classifier over spectrogram frames; the arguments are `tfstyle.configs.TimbreEncoderConfig`'s."""
