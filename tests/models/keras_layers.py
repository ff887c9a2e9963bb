"""Keras layers the test models need that Keras does not have (used by make_models.py)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

L = tf.keras.layers


class SpaceToBatchConv(L.Layer):
    """A 3x3 dilated conv (or depthwise conv) computed as TensorFlow's atrous convolution does:
    SPACE_TO_BATCH_ND, a VALID conv on every phase with its bias and ReLU, BATCH_TO_SPACE_ND.
    With the bias and activation inside, TFLiteConverter keeps the three ops (with static
    shapes, batch rate^2 in between) instead of folding them into one dilated conv."""

    def __init__(self, filters, rate, depthwise=False, **kw):
        super().__init__(**kw)
        self.filters, self.rate, self.depthwise = filters, rate, depthwise

    def build(self, input_shape):
        cin = int(input_shape[-1])
        shape = (3, 3, cin, 1) if self.depthwise else (3, 3, cin, self.filters)
        self.kernel = self.add_weight(shape=shape, initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(cin if self.depthwise else self.filters,), initializer="zeros",
                                    name="bias")
        self.bias.assign(np.linspace(-0.2, 0.2, self.bias.shape[0]).astype(np.float32))

    def call(self, x):
        r = self.rate
        paddings, crops = tf.required_space_to_batch_paddings(
            input_shape=tf.shape(x)[1:3], block_shape=[r, r], base_paddings=[[r, r], [r, r]])
        y = tf.space_to_batch_nd(x, [r, r], paddings)
        if self.depthwise:
            y = tf.nn.depthwise_conv2d(y, self.kernel, [1, 1, 1, 1], "VALID")
        else:
            y = tf.nn.conv2d(y, self.kernel, 1, "VALID")
        y = tf.nn.relu(y + self.bias)
        return tf.batch_to_space(y, [r, r], crops)
