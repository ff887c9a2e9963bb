"""The Keras architectures of the test models (tests/models/make_models.py builds, converts and checks them)."""
from __future__ import annotations

import tensorflow as tf

keras = tf.keras
L = keras.layers


def tail(x):
    x = L.GlobalAveragePooling2D()(x)
    return L.Dense(10)(x)


def mobilenetv2(size: int):
    def build():
        return keras.applications.MobileNetV2(alpha=0.35, input_shape=(size, size, 3),
                                              weights=None, classes=10)
    return build


def mobilenetv2_full(size: int):
    def build():
        return keras.applications.MobileNetV2(alpha=1.0, input_shape=(size, size, 3), weights=None, classes=10)
    return build


def mobilenetv3_small_like():
    """MobileNetV3-Small's front as TFLite lowers it: hard-swish, LeakyReLU, ReLU6, ReLU and a sigmoid stand
    alone after convs and pools (not fusable), so every pointwise stage op appears."""
    hs = keras.activations.hard_swish
    i = keras.Input((64, 64, 3))
    x = L.Conv2D(16, 3, strides=2, padding="same")(i)
    x = L.BatchNormalization()(x)
    x = L.Activation(hs)(x)                       # HARD_SWISH
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.LeakyReLU(0.1)(x)                       # LEAKY_RELU
    x = L.ReLU(6.0)(x)                            # RELU6
    x = L.Conv2D(24, 1)(x)
    x = L.BatchNormalization()(x)
    x = L.MaxPooling2D(2)(x)
    x = L.LeakyReLU(0.2)(x)
    x = L.ReLU()(x)                               # RELU
    x = L.Conv2D(48, 1)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation(hs)(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("sigmoid")(x)                # LOGISTIC
    x = L.AveragePooling2D(3, strides=1, padding="same")(x)
    x = L.Conv2D(24, 1)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation(hs)(x)
    return keras.Model(i, tail(x))


def cnn_uint8():
    """A camera pipeline's CNN: uint8 96x96 RGB in (QUANTIZE to int8 first), int8 out."""
    i = keras.Input((96, 96, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(i)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 1, activation="relu")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 1, activation="relu")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 1)(x)
    return keras.Model(i, tail(x))


def mobilenetv1_025_96_gray():
    """The shape of TFLM's person-detection model: MobileNetV1 alpha 0.25, 96x96x1."""
    base = keras.applications.MobileNet(alpha=0.25, input_shape=(96, 96, 1), include_top=False, weights=None)
    return keras.Model(base.input, tail(base.output))


def kernels_5x5_7x7():
    i = keras.Input((40, 40, 3))
    x = L.Conv2D(8, 7, strides=2, padding="same", activation="relu")(i)
    x = L.DepthwiseConv2D(5, padding="same", activation="relu6")(x)
    x = L.Conv2D(12, 5, padding="same")(x)
    return keras.Model(i, tail(x))


def stride2(size):
    i = keras.Input((size, size, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(i)
    x = L.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = L.Conv2D(16, 1, activation="relu")(x)
    return keras.Model(i, tail(x))


def dilation2():
    # batch_size=1: with a dynamic batch dimension the converter cannot fold the
    # SPACE_TO_BATCH_ND -> conv -> BATCH_TO_SPACE_ND that tf.nn.convolution emits
    # for dilation > 1 back into a dilated CONV_2D / DEPTHWISE_CONV_2D
    # (tensorflow/tensorflow#53025, keras-team/keras#17450); with a static batch
    # it does, and the model holds real dilation factors.
    i = keras.Input((36, 36, 3), batch_size=1)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(i)
    x = L.Conv2D(8, 3, dilation_rate=2, padding="same", activation="relu")(x)
    x = L.DepthwiseConv2D(3, dilation_rate=2, padding="same")(x)
    x = L.Conv2D(8, 1)(x)
    return keras.Model(i, tail(x))


def dilation_space_to_batch():
    from keras_layers import SpaceToBatchConv  # this folder: the script's own directory is on sys.path
    i = keras.Input((45, 45, 3), batch_size=1)
    x = L.Conv2D(16, 3, padding="same", activation="relu")(i)
    x = SpaceToBatchConv(16, 2)(x)
    x = SpaceToBatchConv(16, 3, depthwise=True)(x)
    x = L.Conv2D(8, 1)(x)
    return keras.Model(i, tail(x))


def rescaling_normalization():
    """Keras preprocessing inside the model, as users ship it: Rescaling (scalar MUL, ADD) and
    Normalization (per-channel SUB, MUL), then a gated block (MUL of two feature maps)."""
    i = keras.Input((48, 48, 3))
    x = L.Rescaling(0.5, offset=0.5)(i)                     # [-1, 1] -> [0, 1]
    x = L.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.052, 0.050, 0.051])(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    a = L.Conv2D(16, 1)(x)
    b = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.Multiply()([a, b])
    x = L.Conv2D(8, 1)(x)
    return keras.Model(i, tail(x))


def valid_padding():
    i = keras.Input((37, 37, 3))
    x = L.Conv2D(8, 3, strides=2, padding="valid", activation="relu")(i)
    x = L.DepthwiseConv2D(3, padding="valid", activation="relu6")(x)
    x = L.Conv2D(8, 3, padding="valid")(x)
    return keras.Model(i, tail(x))


def residual_add():
    i = keras.Input((48, 48, 3))
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(i)
    y = L.Conv2D(32, 1, activation="relu6")(x)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
    y = L.Conv2D(16, 1)(y)
    z = L.Add()([x, y])
    z = L.Conv2D(24, 1, activation="relu")(z)
    return keras.Model(i, tail(z))


def nonsquare():
    i = keras.Input((30, 52, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(i)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 1)(x)
    return keras.Model(i, tail(x))


def pooling_pad():
    i = keras.Input((40, 40, 3))
    x = L.ZeroPadding2D(((1, 2), (2, 1)))(i)
    x = L.Conv2D(8, 3, padding="valid", activation="relu")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.AveragePooling2D(3, strides=1, padding="same")(x)
    x = L.AveragePooling2D(2, strides=2, padding="valid")(x)
    x = L.Conv2D(8, 1)(x)
    return keras.Model(i, tail(x))


def depth_multiplier():
    i = keras.Input((32, 32, 4))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu")(i)
    x = L.Conv2D(8, 1)(x)
    return keras.Model(i, tail(x))


def unet_small():
    """A small U-Net: two stride-2 encoder convs, a decoder of nearest-neighbour upsampling + Concatenate skip
    connections, then a stride-2 conv so the stage can end smaller than the full-resolution decoder.
    Keras 3's UpSampling2D(interpolation="nearest") lowers to RESHAPE/TILE ops; Resizing(nearest) (what
    tf.image.resize does) lowers to RESIZE_NEAREST_NEIGHBOR (half_pixel_centers), so the decoder uses it."""
    i = keras.Input((64, 64, 3))
    e1 = L.Conv2D(8, 3, padding="same", activation="relu")(i)
    e2 = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(e1)
    e3 = L.Conv2D(24, 3, strides=2, padding="same", activation="relu")(e2)
    d = L.Concatenate()([L.Resizing(32, 32, interpolation="nearest")(e3), e2])
    d = L.Conv2D(16, 3, padding="same", activation="relu")(d)
    d = L.Concatenate()([L.Resizing(64, 64, interpolation="nearest")(d), e1])
    d = L.Conv2D(8, 3, padding="same", activation="relu")(d)
    d = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(d)
    return keras.Model(i, tail(d))


# name -> (builder, seed, recalibrate BN?, {op: minimum count} that must be present)
