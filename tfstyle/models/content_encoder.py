"""`content_encoder`: a content representation that follows what is said and not who says it.

Each frame's spectral envelope (the log spectrum's cepstrum below `input_lifter`: formants without the harmonics,
so without the voice's pitch), less the clip's mean envelope over time (the long-term spectrum is mostly the
voice), feeds a learnt per-frame projection and four dilated 1-D convolutions over time (kernel 5, then 3 with
dilation 2, 4, 8: about half a second of context; each conv -> ReLU -> BatchNorm). A dense map gives the
"content" layer, normalised per channel over the clip's frames, so that a voice's overall level and spread of each
channel are gone too.

Trained only as a parallel corpus allows (tfstyle.aligned_data: one sentence in two voices, frames aligned by DTW):
  - frame contrast: a frame's content vector is nearer its aligned frame in the other voice than any other frame
    of the batch (other moments of the same sentence included);
  - Gram contrast: a clip's content Gram matrix is nearer its pair's (the same words in another voice) than any
    other clip's of the batch, which is what tfstyle.evaluate and the transfer's style loss compare;
  - optionally, a speaker classifier on the content Grams is kept at chance (speaker_confusion_weight).
The "content" layer is the model's one feature layer, with the role "content": transfer matches it frame by frame.
"""

import keras
import tensorflow as tf

from tfstyle import aligned_data, configs, registry, spectral_ops
from tfstyle.models.base import FixedSignalModel, log_magnitude_of, track_layers, waveform_spec

_KERNELS_AND_DILATIONS = ((5, 1), (3, 2), (3, 4), (3, 8))


def _masked_moments(x: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean and variance over time [batch, 1, channels] of x [batch, frames, channels], counting frames where
    mask [batch, frames] is 1."""
    return tf.nn.weighted_moments(x, axes=[1], frequency_weights=mask[..., tf.newaxis], keepdims=True)


def _contrastive_loss(logits: tf.Tensor) -> tf.Tensor:
    """Symmetric InfoNCE: row i's match is column i, in both directions."""
    labels = tf.range(tf.shape(logits)[0])
    return 0.5 * (tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
                  + tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.transpose(logits))))


@registry.register_model("content_encoder", configs.ContentEncoderConfig)
class ContentEncoder(FixedSignalModel):
    """Content features of spectrogram frames; the arguments are `tfstyle.configs.ContentEncoderConfig`'s."""

    feature_layer_names = ("content",)
    FEATURE_ROLE = "content"

    def __init__(self, *, sample_rate, frame_length, frame_step, input_lifter, projection, channels, content_dim,
                 frame_temperature, gram_temperature, gram_weight, speaker_confusion_weight, num_speakers,
                 **kwargs):
        super().__init__(sample_rate=sample_rate, frame_length=frame_length, frame_step=frame_step, **kwargs)
        self.input_lifter = input_lifter
        self.projection_width, self.channels, self.content_dim = projection, channels, content_dim
        self.frame_temperature, self.gram_temperature = frame_temperature, gram_temperature
        self.gram_weight, self.speaker_confusion_weight = gram_weight, speaker_confusion_weight
        self.num_speakers = num_speakers
        self.projection = keras.layers.Dense(projection, name="projection")
        self.blocks = [[keras.layers.Conv1D(channels, kernel, dilation_rate=dilation, padding="same",
                                            name=f"conv{i + 1}"),
                        keras.layers.BatchNormalization(name=f"conv{i + 1}_bn")]
                       for i, (kernel, dilation) in enumerate(_KERNELS_AND_DILATIONS)]
        track_layers(self, blocks=self.blocks)  # else checkpoints and SavedModels would skip their weights
        self.content_layer = keras.layers.Dense(content_dim, name="content")
        # Training only, when its weight is not 0: the classifier the content Grams must leave at chance. It trains
        # on its own loss (compute_losses stops its gradient from reaching the encoder there).
        self.speaker_classifier = None
        if speaker_confusion_weight > 0:
            self.speaker_classifier = keras.layers.Dense(num_speakers, name="speaker_classifier")
            self.speaker_classifier(tf.zeros([1, content_dim * content_dim]))
        self.features(tf.zeros([1, 4, self.bins]))  # create every weight up front
        self.built = True

    @classmethod
    def training_data(cls, config: configs.DataConfig):
        return aligned_data.AlignedPairs(config)

    def encode(self, log_magnitude, mask=None, training=False):
        """Content vectors [batch, frames, content_dim] of log-magnitudes [batch, frames, bins]; `mask`
        [batch, frames] marks real frames in a padded batch (default: all)."""
        log_magnitude = tf.convert_to_tensor(log_magnitude, tf.float32)
        if mask is None:
            mask = tf.ones(tf.shape(log_magnitude)[:2])
        if self.input_lifter:
            log_magnitude = spectral_ops.spectral_envelope(log_magnitude, self.input_lifter)
        mean, _ = _masked_moments(log_magnitude, mask)
        x = self.projection((log_magnitude - mean) * mask[..., tf.newaxis])
        for conv, norm in self.blocks:
            x = norm(tf.nn.relu(conv(x)), training=training)
        x = self.content_layer(x)
        mean, variance = _masked_moments(x, mask)
        return (x - mean) * tf.math.rsqrt(variance + 1e-5) * mask[..., tf.newaxis]

    def features(self, log_magnitude, training=False):
        """{"content": content vectors [batch, frames, content_dim]}."""
        return {"content": self.encode(log_magnitude, training=training)}

    def call(self, log_magnitude, training=False):
        return self.encode(log_magnitude, training=training)

    def _grams(self, content, mask):
        # [batch, content_dim^2]: each clip's Gram over its real frames, flattened.
        gram = tf.einsum("btc,btd->bcd", content, content) / tf.reduce_sum(mask, axis=1)[:, tf.newaxis, tf.newaxis]
        return tf.reshape(gram, [tf.shape(content)[0], -1])

    def compute_losses(self, batch, training=False):
        """Losses of a batch of aligned pairs (tfstyle.aligned_data): the frame and Gram contrasts, and the
        speaker classifier's loss and the encoder's confusion of it."""
        masks = [tf.sequence_mask(batch[key], tf.shape(batch[spectrogram])[1], tf.float32)
                 for key, spectrogram in (("frames", "log_magnitude"), ("paired_frames", "paired_log_magnitude"))]
        first = self.encode(batch["log_magnitude"], masks[0], training=training)
        second = self.encode(batch["paired_log_magnitude"], masks[1], training=training)
        aligned = batch["aligned"]  # [batch, pairs, 2]: frame in the first clip, the same moment in the second
        rows = tf.tile(tf.range(tf.shape(aligned)[0])[:, tf.newaxis], [1, tf.shape(aligned)[1]])
        frames_first = tf.gather_nd(first, tf.reshape(tf.stack([rows, aligned[..., 0]], -1), [-1, 2]))
        frames_second = tf.gather_nd(second, tf.reshape(tf.stack([rows, aligned[..., 1]], -1), [-1, 2]))
        frame_loss = _contrastive_loss(
            tf.matmul(tf.math.l2_normalize(frames_first, -1), tf.math.l2_normalize(frames_second, -1),
                      transpose_b=True) / self.frame_temperature)
        grams = [self._grams(first, masks[0]), self._grams(second, masks[1])]
        gram_loss = _contrastive_loss(
            tf.matmul(tf.math.l2_normalize(grams[0], -1), tf.math.l2_normalize(grams[1], -1), transpose_b=True)
            / self.gram_temperature)
        total = frame_loss + self.gram_weight * gram_loss
        result = {"frame_loss": frame_loss, "gram_loss": gram_loss}
        if self.speaker_classifier is not None:
            # Unit-norm Grams, scaled so that the classifier's logits need no large weights.
            unit_grams = tf.math.l2_normalize(tf.concat(grams, 0), -1) * float(self.content_dim)
            labels = tf.cast(tf.concat([batch["label"], batch["paired_label"]], 0), tf.int32)
            tf.debugging.assert_less(labels, self.num_speakers,
                                     message="more speakers in the data than the config's num_speakers")
            speaker_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels, self.speaker_classifier(tf.stop_gradient(unit_grams))))
            # Cross-entropy of the classifier's guess against a uniform one, through a frozen copy of its weights:
            # lowest when the Grams say nothing of the speaker.
            logits = tf.matmul(unit_grams, tf.stop_gradient(self.speaker_classifier.kernel)) \
                + tf.stop_gradient(self.speaker_classifier.bias)
            confusion = -tf.reduce_mean(tf.nn.log_softmax(logits))
            total += speaker_loss + self.speaker_confusion_weight * confusion
            result.update(speaker_loss=speaker_loss, speaker_confusion=confusion)
        return {"total_loss": total, **result}

    def summary_spectrograms(self, batch):
        return {"input": batch["log_magnitude"], "paired_input": batch["paired_log_magnitude"]}

    def serving_functions(self, signal: dict) -> dict:
        functions = super().serving_functions(signal)
        functions["serving_default"] = tf.function(
            lambda waveform: {"embedding": self.encode(log_magnitude_of(waveform, signal))},
            input_signature=[waveform_spec()])
        return functions

    def get_config(self):
        return {**super().get_config(), "input_lifter": self.input_lifter, "projection": self.projection_width,
                "channels": self.channels, "content_dim": self.content_dim, "frame_temperature": self.frame_temperature,
                "gram_temperature": self.gram_temperature, "gram_weight": self.gram_weight,
                "speaker_confusion_weight": self.speaker_confusion_weight, "num_speakers": self.num_speakers}
