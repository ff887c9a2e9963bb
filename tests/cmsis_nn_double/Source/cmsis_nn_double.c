/* The CMSIS-NN test double: see Include/cmsis_nn_stand_in.h. */
#include "cmsis_nn_stand_in.h"

#include <string.h>

static tflm_patch_cmsis_double_counts g_counts;
static int64_t g_window_pixels;

void tflm_patch_cmsis_double_reset(void) {
  memset(&g_counts, 0, sizeof(g_counts));
  g_window_pixels = 0;
}
tflm_patch_cmsis_double_counts tflm_patch_cmsis_double_get(void) { return g_counts; }
int64_t tflm_patch_cmsis_double_window_pixels(void) { return g_window_pixels; }

/* ---- TFLite's reference requantization ---------------------------------- */

static int32_t wrap_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

static int32_t rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)((1ll << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static int32_t doubling_high_mul(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  const int64_t ab = (int64_t)a * (int64_t)b;
  const int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / (1ll << 31));
}

static int32_t requantize(int32_t x, int32_t multiplier, int32_t shift) {
#if defined(TFLITE_SINGLE_ROUNDING) || defined(CMSIS_NN_USE_SINGLE_ROUNDING)
  const int total_shift = 31 - shift;
  const int64_t round = 1ll << (total_shift - 1);
  return (int32_t)(((int64_t)x * multiplier + round) >> total_shift);
#else
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return rounding_divide_by_pot(doubling_high_mul((int32_t)((uint32_t)x << left), multiplier), right);
#endif
}

static int8_t clamp8(int32_t v, const cmsis_nn_activation *act) {
  if (v < act->min) v = act->min;
  if (v > act->max) v = act->max;
  return (int8_t)v;
}

/* ---- Preconditions ------------------------------------------------------- */

/* Real CMSIS-NN stores padding in uint16_t and strides/dims in int32/uint16. */
static int geometry_ok(const cmsis_nn_dims *in, const cmsis_nn_dims *out, const cmsis_nn_tile *pad,
                       const cmsis_nn_tile *stride) {
  return in->n == 1 && out->n == 1 && in->h > 0 && in->w > 0 && in->c > 0 && out->h > 0 && out->w > 0 &&
         out->c > 0 && pad->h >= 0 && pad->w >= 0 && pad->h <= 0xffff && pad->w <= 0xffff && stride->h > 0 &&
         stride->w > 0;
}

/* Uses the whole context buffer the matching get_buffer_size asked for. */
static int use_context(const cmsis_nn_context *ctx, int32_t bytes) {
  if (bytes <= 0) return 1;
  if (ctx == NULL || ctx->buf == NULL || ctx->size < bytes) return 0;
  memset(ctx->buf, 0xA5, (size_t)bytes);
  return 1;
}

static int32_t general_conv_buffer(const cmsis_nn_dims *input_dims, const cmsis_nn_dims *filter_dims) {
  return 2 * input_dims->c * filter_dims->h * filter_dims->w * (int32_t)sizeof(int16_t);
}

/* ---- Convolution --------------------------------------------------------- */

static void conv_loops(const cmsis_nn_conv_params *p, const cmsis_nn_per_channel_quant_params *q,
                       const cmsis_nn_dims *in_dims, const int8_t *in, const cmsis_nn_dims *f_dims,
                       const int8_t *filter, const int32_t *bias, const cmsis_nn_dims *out_dims, int8_t *out) {
  const int32_t in_c = in_dims->c, out_c = out_dims->c;
  for (int32_t oy = 0; oy < out_dims->h; ++oy) {
    for (int32_t ox = 0; ox < out_dims->w; ++ox) {
      for (int32_t oc = 0; oc < out_c; ++oc) {
        int32_t acc = 0;
        for (int32_t ky = 0; ky < f_dims->h; ++ky) {
          const int32_t iy = oy * p->stride.h - p->padding.h + ky * p->dilation.h;
          if (iy < 0 || iy >= in_dims->h) continue;
          for (int32_t kx = 0; kx < f_dims->w; ++kx) {
            const int32_t ix = ox * p->stride.w - p->padding.w + kx * p->dilation.w;
            if (ix < 0 || ix >= in_dims->w) continue;
            const int8_t *pixel = in + ((int64_t)iy * in_dims->w + ix) * in_c;
            const int8_t *taps = filter + (((int64_t)oc * f_dims->h + ky) * f_dims->w + kx) * in_c;
            for (int32_t ic = 0; ic < in_c; ++ic) acc = wrap_add(acc, taps[ic] * (pixel[ic] + p->input_offset));
          }
        }
        if (bias != NULL) acc = wrap_add(acc, bias[oc]);
        acc = wrap_add(requantize(acc, q->multiplier[oc], q->shift[oc]), p->output_offset);
        out[((int64_t)oy * out_dims->w + ox) * out_c + oc] = clamp8(acc, &p->activation);
      }
    }
  }
}

arm_cmsis_nn_status arm_convolve_s8(const cmsis_nn_context *ctx, const cmsis_nn_conv_params *conv_params,
                                    const cmsis_nn_per_channel_quant_params *quant_params,
                                    const cmsis_nn_dims *input_dims, const int8_t *input_data,
                                    const cmsis_nn_dims *filter_dims, const int8_t *filter_data,
                                    const cmsis_nn_dims *bias_dims, const int32_t *bias_data,
                                    const cmsis_nn_dims *upscale_dims, const cmsis_nn_dims *output_dims,
                                    int8_t *output_data) {
  (void)bias_dims;
  if (upscale_dims != NULL || filter_dims->c != input_dims->c || filter_dims->n != output_dims->c ||
      !geometry_ok(input_dims, output_dims, &conv_params->padding, &conv_params->stride) ||
      !use_context(ctx, general_conv_buffer(input_dims, filter_dims))) {
    return ARM_CMSIS_NN_ARG_ERROR;
  }
  ++g_counts.conv_general;
  g_window_pixels += (int64_t)output_dims->h * output_dims->w;
  conv_loops(conv_params, quant_params, input_dims, input_data, filter_dims, filter_data, bias_data, output_dims,
             output_data);
  return ARM_CMSIS_NN_SUCCESS;
}

int32_t arm_convolve_s8_get_buffer_size(const cmsis_nn_dims *input_dims, const cmsis_nn_dims *filter_dims) {
  return general_conv_buffer(input_dims, filter_dims);
}

static int is_1x1(const cmsis_nn_conv_params *p, const cmsis_nn_dims *in, const cmsis_nn_dims *f) {
  return p->padding.w == 0 && p->padding.h == 0 && f->w == 1 && f->h == 1 && p->dilation.w == 1 &&
         p->dilation.h == 1 && in->c == f->c;
}

static int is_1_x_n(const cmsis_nn_conv_params *p, const cmsis_nn_dims *in, const cmsis_nn_dims *f) {
  return in->h == 1 && p->dilation.w == 1 && f->h == 1 && (p->stride.w * in->c) % 4 == 0 && in->c == f->c;
}

arm_cmsis_nn_status arm_convolve_wrapper_s8(const cmsis_nn_context *ctx, const cmsis_nn_conv_params *conv_params,
                                            const cmsis_nn_per_channel_quant_params *quant_params,
                                            const cmsis_nn_dims *input_dims, const int8_t *input_data,
                                            const cmsis_nn_dims *filter_dims, const int8_t *filter_data,
                                            const cmsis_nn_dims *bias_dims, const int32_t *bias_data,
                                            const cmsis_nn_dims *output_dims, int8_t *output_data) {
  if (is_1x1(conv_params, input_dims, filter_dims)) {
    const int fast = conv_params->stride.w == 1 && conv_params->stride.h == 1;
    /* The unit-stride kernel computes n*h*w input pixels, whatever output_dims
     * say; the strided one walks the input rows with the output's width. */
    if (!geometry_ok(input_dims, output_dims, &conv_params->padding, &conv_params->stride) ||
        (fast && (input_dims->h != output_dims->h || input_dims->w != output_dims->w)) ||
        (!fast && ((output_dims->h - 1) * conv_params->stride.h >= input_dims->h ||
                   (output_dims->w - 1) * conv_params->stride.w >= input_dims->w))) {
      return ARM_CMSIS_NN_ARG_ERROR;
    }
    ++g_counts.conv_1x1;
    g_window_pixels += (int64_t)output_dims->h * output_dims->w;
    conv_loops(conv_params, quant_params, input_dims, input_data, filter_dims, filter_data, bias_data, output_dims,
               output_data);
    return ARM_CMSIS_NN_SUCCESS;
  }
  if (is_1_x_n(conv_params, input_dims, filter_dims)) {
    /* The 1xN kernel derives its right padding from a whole-image SAME geometry. */
    const int32_t total_pad =
        (output_dims->w - 1) * conv_params->stride.w + filter_dims->w - input_dims->w;
    if (conv_params->padding.w * 2 + total_pad % 2 != total_pad) return ARM_CMSIS_NN_ARG_ERROR;
  }
  return arm_convolve_s8(ctx, conv_params, quant_params, input_dims, input_data, filter_dims, filter_data,
                         bias_dims, bias_data, NULL, output_dims, output_data);
}

int32_t arm_convolve_wrapper_s8_get_buffer_size(const cmsis_nn_conv_params *conv_params,
                                                const cmsis_nn_dims *input_dims, const cmsis_nn_dims *filter_dims,
                                                const cmsis_nn_dims *output_dims) {
  (void)output_dims;
  return is_1x1(conv_params, input_dims, filter_dims) ? 0 : general_conv_buffer(input_dims, filter_dims);
}

/* ---- Depthwise convolution ----------------------------------------------- */

static int uses_3x3_kernel(const cmsis_nn_dw_conv_params *p, const cmsis_nn_dims *f) {
  return p->ch_mult == 1 && p->dilation.w == 1 && p->dilation.h == 1 && f->w == 3 && f->h == 3 &&
         p->padding.h <= 1 && p->padding.w <= 1;
}

int32_t arm_depthwise_conv_wrapper_s8_get_buffer_size(const cmsis_nn_dw_conv_params *dw_conv_params,
                                                      const cmsis_nn_dims *input_dims,
                                                      const cmsis_nn_dims *filter_dims,
                                                      const cmsis_nn_dims *output_dims) {
  (void)output_dims;
  if (uses_3x3_kernel(dw_conv_params, filter_dims)) return 0;
  return input_dims->c * filter_dims->w * filter_dims->h * (int32_t)sizeof(int16_t);
}

arm_cmsis_nn_status arm_depthwise_conv_wrapper_s8(const cmsis_nn_context *ctx,
                                                  const cmsis_nn_dw_conv_params *p,
                                                  const cmsis_nn_per_channel_quant_params *q,
                                                  const cmsis_nn_dims *in_dims, const int8_t *in,
                                                  const cmsis_nn_dims *f_dims, const int8_t *filter,
                                                  const cmsis_nn_dims *bias_dims, const int32_t *bias,
                                                  const cmsis_nn_dims *out_dims, int8_t *out) {
  (void)bias_dims;
  if (!geometry_ok(in_dims, out_dims, &p->padding, &p->stride) || f_dims->c != out_dims->c ||
      out_dims->c != in_dims->c * p->ch_mult ||
      !use_context(ctx, arm_depthwise_conv_wrapper_s8_get_buffer_size(p, in_dims, f_dims, out_dims))) {
    return ARM_CMSIS_NN_ARG_ERROR;
  }
  if (uses_3x3_kernel(p, f_dims)) {
    /* The 3x3 kernel reads every window's middle column unchecked. */
    for (int32_t ox = 0; ox < out_dims->w; ++ox) {
      const int32_t middle = ox * p->stride.w - p->padding.w + 1;
      if (middle < 0 || middle >= in_dims->w) return ARM_CMSIS_NN_ARG_ERROR;
    }
  }
  ++g_counts.depthwise;
  g_window_pixels += (int64_t)out_dims->h * out_dims->w;
  const int32_t out_c = out_dims->c;
  for (int32_t oy = 0; oy < out_dims->h; ++oy) {
    for (int32_t ox = 0; ox < out_dims->w; ++ox) {
      for (int32_t ic = 0; ic < in_dims->c; ++ic) {
        for (int32_t m = 0; m < p->ch_mult; ++m) {
          const int32_t oc = ic * p->ch_mult + m;
          int32_t acc = 0;
          for (int32_t ky = 0; ky < f_dims->h; ++ky) {
            const int32_t iy = oy * p->stride.h - p->padding.h + ky * p->dilation.h;
            if (iy < 0 || iy >= in_dims->h) continue;
            for (int32_t kx = 0; kx < f_dims->w; ++kx) {
              const int32_t ix = ox * p->stride.w - p->padding.w + kx * p->dilation.w;
              if (ix < 0 || ix >= in_dims->w) continue;
              const int32_t value = in[((int64_t)iy * in_dims->w + ix) * in_dims->c + ic];
              acc = wrap_add(acc, filter[((int64_t)ky * f_dims->w + kx) * out_c + oc] * (value + p->input_offset));
            }
          }
          if (bias != NULL) acc = wrap_add(acc, bias[oc]);
          acc = wrap_add(requantize(acc, q->multiplier[oc], q->shift[oc]), p->output_offset);
          out[((int64_t)oy * out_dims->w + ox) * out_c + oc] = clamp8(acc, &p->activation);
        }
      }
    }
  }
  return ARM_CMSIS_NN_SUCCESS;
}

/* ---- Pooling ------------------------------------------------------------- */

static arm_cmsis_nn_status pool(const cmsis_nn_pool_params *p, const cmsis_nn_dims *in_dims, const int8_t *in,
                                const cmsis_nn_dims *f_dims, const cmsis_nn_dims *out_dims, int8_t *out,
                                int average) {
  if (!geometry_ok(in_dims, out_dims, &p->padding, &p->stride) || in_dims->c != out_dims->c) {
    return ARM_CMSIS_NN_ARG_ERROR;
  }
  const int32_t ch = in_dims->c;
  for (int32_t oy = 0; oy < out_dims->h; ++oy) {
    for (int32_t ox = 0; ox < out_dims->w; ++ox) {
      const int32_t y0 = oy * p->stride.h - p->padding.h, x0 = ox * p->stride.w - p->padding.w;
      const int32_t ky0 = y0 < 0 ? 0 : y0, kx0 = x0 < 0 ? 0 : x0;
      const int32_t ky1 = y0 + f_dims->h < in_dims->h ? y0 + f_dims->h : in_dims->h;
      const int32_t kx1 = x0 + f_dims->w < in_dims->w ? x0 + f_dims->w : in_dims->w;
      const int32_t count = (ky1 - ky0) * (kx1 - kx0);
      if (count <= 0) return ARM_CMSIS_NN_ARG_ERROR;
      for (int32_t c = 0; c < ch; ++c) {
        int32_t acc = average ? 0 : -128;
        for (int32_t y = ky0; y < ky1; ++y) {
          for (int32_t x = kx0; x < kx1; ++x) {
            const int32_t v = in[((int64_t)y * in_dims->w + x) * ch + c];
            if (average) acc += v; else if (v > acc) acc = v;
          }
        }
        if (average) acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        out[((int64_t)oy * out_dims->w + ox) * ch + c] = clamp8(acc, &p->activation);
      }
    }
  }
  return ARM_CMSIS_NN_SUCCESS;
}

arm_cmsis_nn_status arm_max_pool_s8(const cmsis_nn_context *ctx, const cmsis_nn_pool_params *pool_params,
                                    const cmsis_nn_dims *input_dims, const int8_t *input_data,
                                    const cmsis_nn_dims *filter_dims, const cmsis_nn_dims *output_dims,
                                    int8_t *output_data) {
  (void)ctx;
  ++g_counts.max_pool;
  g_window_pixels += (int64_t)output_dims->h * output_dims->w;
  return pool(pool_params, input_dims, input_data, filter_dims, output_dims, output_data, 0);
}

int32_t arm_avgpool_s8_get_buffer_size(const int dim_dst_width, const int ch_src) {
  (void)dim_dst_width;
  return ch_src * (int32_t)sizeof(int32_t);
}

arm_cmsis_nn_status arm_avgpool_s8(const cmsis_nn_context *ctx, const cmsis_nn_pool_params *pool_params,
                                   const cmsis_nn_dims *input_dims, const int8_t *input_data,
                                   const cmsis_nn_dims *filter_dims, const cmsis_nn_dims *output_dims,
                                   int8_t *output_data) {
  if (!use_context(ctx, arm_avgpool_s8_get_buffer_size(output_dims->w, input_dims->c))) {
    return ARM_CMSIS_NN_ARG_ERROR;
  }
  ++g_counts.avg_pool;
  g_window_pixels += (int64_t)output_dims->h * output_dims->w;
  return pool(pool_params, input_dims, input_data, filter_dims, output_dims, output_data, 1);
}

/* ---- Elementwise add ----------------------------------------------------- */

arm_cmsis_nn_status arm_elementwise_add_s8(const int8_t *input_1_vect, const int8_t *input_2_vect,
                                           const int32_t input_1_offset, const int32_t input_1_mult,
                                           const int32_t input_1_shift, const int32_t input_2_offset,
                                           const int32_t input_2_mult, const int32_t input_2_shift,
                                           const int32_t left_shift, int8_t *output, const int32_t out_offset,
                                           const int32_t out_mult, const int32_t out_shift,
                                           const int32_t out_activation_min, const int32_t out_activation_max,
                                           const int32_t block_size) {
  if (block_size <= 0) return ARM_CMSIS_NN_ARG_ERROR;
  ++g_counts.add;
  const cmsis_nn_activation act = {out_activation_min, out_activation_max};
  for (int32_t i = 0; i < block_size; ++i) {
    const int32_t a = requantize((input_1_vect[i] + input_1_offset) * (1 << left_shift), input_1_mult, input_1_shift);
    const int32_t b = requantize((input_2_vect[i] + input_2_offset) * (1 << left_shift), input_2_mult, input_2_shift);
    output[i] = clamp8(wrap_add(requantize(a + b, out_mult, out_shift), out_offset), &act);
  }
  return ARM_CMSIS_NN_SUCCESS;
}

/* ---- Elementwise mul ----------------------------------------------------- */

arm_cmsis_nn_status arm_elementwise_mul_s8(const int8_t *input_1_vect, const int8_t *input_2_vect,
                                           const int32_t input_1_offset, const int32_t input_2_offset,
                                           int8_t *output, const int32_t out_offset, const int32_t out_mult,
                                           const int32_t out_shift, const int32_t out_activation_min,
                                           const int32_t out_activation_max, const int32_t block_size) {
  if (block_size <= 0) return ARM_CMSIS_NN_ARG_ERROR;
  ++g_counts.mul;
  const cmsis_nn_activation act = {out_activation_min, out_activation_max};
  for (int32_t i = 0; i < block_size; ++i) {
    const int32_t product = (input_1_vect[i] + input_1_offset) * (input_2_vect[i] + input_2_offset);
    output[i] = clamp8(wrap_add(requantize(product, out_mult, out_shift), out_offset), &act);
  }
  return ARM_CMSIS_NN_SUCCESS;
}
