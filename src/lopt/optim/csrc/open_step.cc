// OPEN's optimizer step fused into one CPU kernel, called from JAX through the
// XLA FFI (lopt/optim/fused.py builds the call; lopt/optim/open_opt.py is the
// reference it is tested against).
//
// For every agent parameter the step reads the gradient, the parameter, the six
// momenta, the recurrent carry and the dormancy once, and writes the new momenta,
// the new carry and the update (the deterministic part and the noise apart, or
// their sum) once; the 19 features, the GRU gates and the MLP's activations live in
// registers for one tile of 16 parameters. Gradients and parameters come as one
// buffer per tensor (the agent's leaves, uncopied), dormancy as one short vector
// per tensor read with a period (a layer's neurons), and the update's sum comes
// back too (for the mean shift). Two passes over each tensor:
//
//   1. momenta updated (written out) and the sums of squares of the 15 normalised
//      channels accumulated per tensor (chunk partial sums in double, reduced in a
//      fixed order, so the result does not depend on threads);
//   2. per tensor, the 1/RMS normalisation is folded into the input kernel's rows
//      and the tensor-constant features (training_prop, layer_prop, batch_prop)
//      into the gates' bias, and the seven sign features' part of every gate is
//      tabulated by sign pattern (tensor_weights); then every tile runs the GRU
//      cell and the MLP.
//
// Arithmetic follows the reference up to float rounding: the LayerNorm centring is
// folded into the weights by the caller exactly as the reference does, and the
// transcendental functions are float-accurate polynomial approximations.
//
// Batch: every buffer may carry leading batch dimensions (jax.vmap with
// vmap_method="broadcast_all"); each batch element is an independent step with
// its own weights, key and schedule. Work is split in chunks over (batch element,
// tensor, range of parameters) and spread over XLA's intra-op thread pool; each
// chunk's result is independent of the thread that computes it (deterministic).

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#if defined(__AVX512F__)
// GCC 12's own AVX-512 intrinsics (getexp, scalef) start from an "undefined"
// register it then warns may be uninitialised: a known false positive
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

// (XLA's FFI header compares signed with unsigned sizes in its own templates)
#pragma GCC diagnostic ignored "-Wsign-compare"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int L = 16;  // parameters per tile (one AVX-512 register of floats)
typedef float vf __attribute__((vector_size(L * 4)));
typedef int32_t vi __attribute__((vector_size(L * 4)));
typedef uint32_t vu __attribute__((vector_size(L * 4)));

constexpr int NUM_MOMENTA = 6;
constexpr int NUM_NORMALISED = 15;
constexpr int NUM_FEATURES = 19;
constexpr int DORMANCY_ROW = 18;
constexpr float MOMENTUM_DECAYS[NUM_MOMENTA] = {0.1f, 0.5f, 0.9f, 0.99f, 0.999f, 0.9999f};
constexpr float LOG_EPS = 1e-13f;
constexpr float NORM_EPS = 1e-5f;
constexpr float LN_EPS = 1e-6f;
constexpr int64_t CHUNK = 2048;  // parameters per unit of parallel work

// VECTOR MATHS -----------------------------------------------------------------

// (vf{} + s would cost a scalar add, 0 + s not being s for s = -0, and a
// broadcast from a register on the shuffle port, where a broadcast from memory
// needs only a load)
inline vf splat(float s) {
#if defined(__AVX512F__)
  return (vf)_mm512_set1_ps(s);
#else
  return vf{} + s;
#endif
}
inline vf vload(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void vstore(float* p, vf v) { std::memcpy(p, &v, sizeof(v)); }
// Tail tiles: lanes past n read as 0 and are not written.
inline vf vload_n(const float* p, int n) {
  if (n == L) return vload(p);
  float tmp[L] = {};
  std::memcpy(tmp, p, n * sizeof(float));
  return vload(tmp);
}
inline void vstore_n(float* p, vf v, int n) {
  if (n == L) return vstore(p, v);
  float tmp[L];
  vstore(tmp, v);
  std::memcpy(p, tmp, n * sizeof(float));
}
// a > b ? a : b, and a < b ? a : b: b where either is NaN or both are zeros, as
// maxps and minps (one instruction; GCC writes the ternary as compare and blend)
inline vf vmax(vf a, vf b) {
#if defined(__AVX512F__)
  return (vf)_mm512_max_ps((__m512)a, (__m512)b);
#else
  return a > b ? a : b;
#endif
}
inline vf vmin(vf a, vf b) {
#if defined(__AVX512F__)
  return (vf)_mm512_min_ps((__m512)a, (__m512)b);
#else
  return a < b ? a : b;
#endif
}
inline vf vabs(vf x) { return (vf)((vi)x & 0x7fffffff); }
inline vf vsign(vf x) {
  return x > 0.0f ? splat(1.0f) : (x < 0.0f ? splat(-1.0f) : splat(0.0f) * x);
}
// sign(x)^2: 1 where x is not 0. (Where x is NaN this is 1, not NaN; the log
// channel of the same x is NaN, so the tensor's step is NaN all the same.)
inline vf sign_squared(vf x) { return (vf)((vi)(x != 0.0f) & (vi)splat(1.0f)); }
inline vf vsqrt(vf x) {
#if defined(__AVX512F__)
  return (vf)_mm512_sqrt_ps((__m512)x);
#else
  vf r;
  for (int l = 0; l < L; ++l) r[l] = std::sqrt(x[l]);
  return r;
#endif
}
// Keeps the compiler from contracting a multiply with a later add (FMA), where
// the reference rounds the product first.
inline vf rounded(vf x) {
#if defined(__AVX512F__)
  asm("" : "+v"(x));
#else
  asm("" : "+m"(x));
#endif
  return x;
}

// Natural log of x > 0 (finite, normal): x = m 2^e with m in [sqrt(1/2), sqrt(2)),
// log(m) by a degree-9 polynomial in m - 1 (Cephes' single-precision logf).
inline vf vlog(vf x) {
#if defined(__AVX512F__)
  // e = floor(log2(x sqrt 2)), m = x 2^-e (exact): fewer instructions than the
  // bit manipulation below, the same split up to where x sqrt 2 rounds
  vf ef = (vf)_mm512_getexp_ps((__m512)(x * 1.41421356237309505f));
  vf m = (vf)_mm512_scalef_ps((__m512)x, (__m512)(-ef)) - 1.0f;
#else
  vi xi = (vi)x;
  vi e = ((xi >> 23) & 0xff) - 126;
  vf m = (vf)((xi & 0x007fffff) | 0x3f000000);  // in [0.5, 1)
  vi small = m < 0.707106781186547524f;
  e = e + small;  // -1 where small
  m = (small ? m + m : m) - 1.0f;
  vf ef = __builtin_convertvector(e, vf);
#endif
  vf z = m * m;
  vf y = splat(7.0376836292e-2f);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y = y + ef * -2.12194440e-4f;
  y = y - 0.5f * z;
  return m + y + ef * 0.693359375f;
}

// log(1 + y) for y in (-1, 0]: log(u) (y / (u - 1)) with u = 1 + y rounded,
// which cancels log's error in rounding 1 + y.
inline vf vlog1p(vf y) {
  vf u = rounded(1.0f + y);
  vf d = u - 1.0f;
  vf safe_u = d == 0.0f ? splat(1.0f) : u;
  vf safe_d = d == 0.0f ? splat(1.0f) : d;
  return d == 0.0f ? y : vlog(safe_u) * (y / safe_d);
}

// exp(x): 2^n exp(r), r = x - n log 2 in two parts, degree-6 polynomial (Cephes).
inline vf vexp(vf x) {
  x = vmin(vmax(x, splat(-87.3f)), splat(88.3f));
  vf t = x * 1.44269504088896341f + 0.5f;
  vi n = __builtin_convertvector(t, vi);
  vf nf = __builtin_convertvector(n, vf);
  vi above = nf > t;  // truncation rounded up a negative: floor
  n = n + above;
  nf = __builtin_convertvector(n, vf);
  x = x - nf * 0.693359375f;
  x = x - nf * -2.12194440e-4f;
  vf z = x * x;
  vf y = splat(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  return y * (vf)((n + 127) << 23);
}

// tanh: an odd rational minimax approximation on [-7.9, 7.9] (saturated
// beyond). (Near 0 it is x (1 - 1.3e-7), so x needs no branch of its own.)
inline vf vtanh(vf x) {
#if defined(__AVX512DQ__)
  // one instruction: the smaller magnitude of x and 7.9, with x's sign
  vf c = (vf)_mm512_range_ps((__m512)x, (__m512)splat(7.90531110763549805f), 0x02);
#else
  vf c = vmin(vmax(x, splat(-7.90531110763549805f)), splat(7.90531110763549805f));
#endif
  // numerator and denominator interleaved: two independent chains side by side
  const vf x2 = c * c;
  vf p = splat(-2.76076847742355e-16f), q = splat(1.19825839466702e-06f);
  p = p * x2 + 2.00018790482477e-13f;
  q = q * x2 + 1.18534705686654e-04f;
  p = p * x2 - 8.60467152213735e-11f;
  q = q * x2 + 2.26843463243900e-03f;
  p = p * x2 + 5.12229709037114e-08f;
  q = q * x2 + 4.89352518554385e-03f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  return (p * c) / q;
}

// erfinv on (-1, 1) (Giles 2010, single precision), w = -log1p(-x^2) as XLA.
inline vf verfinv(vf x) {
  vf w = -vlog1p(-rounded(x * x));
  vf lo = w - 2.5f;
  vf p = splat(2.81022636e-08f);
  p = 3.43273939e-07f + p * lo;
  p = -3.5233877e-06f + p * lo;
  p = -4.39150654e-06f + p * lo;
  p = 0.00021858087f + p * lo;
  p = -0.00125372503f + p * lo;
  p = -0.00417768164f + p * lo;
  p = 0.246640727f + p * lo;
  p = 1.50140941f + p * lo;
  vi tail = w >= 5.0f;
#if defined(__AVX512F__)
  const bool any_tail = _mm512_test_epi32_mask((__m512i)tail, (__m512i)tail) != 0;
#else
  bool any_tail = false;
  for (int l = 0; l < L; ++l) any_tail |= tail[l] != 0;
#endif
  if (!any_tail) return p * x;  // |x| < 0.9966 on every lane: the common case
  vf hi = vsqrt(w) - 3.0f;
  vf q = splat(-0.000200214257f);
  q = 0.000100950558f + q * hi;
  q = 0.00134934322f + q * hi;
  q = -0.00367342844f + q * hi;
  q = 0.00573950773f + q * hi;
  q = -0.0076224613f + q * hi;
  q = 0.00943887047f + q * hi;
  q = 1.00167406f + q * hi;
  q = 2.83297682f + q * hi;
  return (w < 5.0f ? p : q) * x;
}

// Threefry-2x32, 20 rounds (Salmon et al. 2011), first output word: the bits
// lopt.optim.noise.normal draws for counters x0 with x1 = 0.
inline vu rotl(vu x, int r) { return (x << r) | (x >> (32 - r)); }
inline vu threefry_word(uint32_t k0, uint32_t k1, vu x0) {
  static constexpr int ROT[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ 0x1BD11BDAu};
  vu x1 = vu{} + k1;
  x0 = x0 + k0;
  for (int block = 0; block < 5; ++block) {
    for (int i = 0; i < 4; ++i) {
      x0 = x0 + x1;
      x1 = rotl(x1, ROT[block % 2][i]) ^ x0;
    }
    x0 = x0 + ks[(block + 1) % 3];
    x1 = x1 + (ks[(block + 2) % 3] + uint32_t(block + 1));
  }
  return x0;
}

// N(0, 1) draws for counters start .. start + L - 1 (lopt.optim.noise.normal).
inline vf normal_draws(uint32_t k0, uint32_t k1, int64_t start) {
  // a broadcast plus the lane numbers (written lane by lane, GCC builds the
  // vector with 16 dependent inserts: a third of the draw's time)
  const vu lanes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  const vu counter = uint32_t(start) + lanes;
  vu bits = threefry_word(k0, k1, counter);
  vf floats = (vf)((bits >> 9) | 0x3F800000u);
  const float lo = std::nextafter(-1.0f, 0.0f);
  vf uniform = vmax(splat(lo), rounded((floats - 1.0f) * 2.0f) + lo);
  return 1.41421356237309515f * verfinv(uniform);
}

// LAYOUT ------------------------------------------------------------------------

// Offsets into one packed meta-parameter set (lopt/optim/fused.py packs it):
// input kernel (19, 3G) with zero rows for features the variant does not read,
// input bias (3G), hidden kernel (G, 3G), the n gate's hidden bias (G); two MLP
// layers with LayerNorm centring folded in, kernel (in, H), bias, LN scale, LN
// bias (H each); head kernel (H, 3) and bias (3).
struct Layout {
  int G, H;
  int64_t wi, bi, wh, bhn, w0, b0, s0, c0, w1, b1, s1, c1, w2, b2, size;
  Layout(int g, int h) : G(g), H(h) {
    int64_t o = 0;
    auto take = [&o](int64_t n) { int64_t at = o; o += n; return at; };
    wi = take(NUM_FEATURES * 3 * G);
    bi = take(3 * G);
    wh = take(G * 3 * G);
    bhn = take(G);
    w0 = take(G * H);
    b0 = take(H);
    s0 = take(H);
    c0 = take(H);
    w1 = take(H * H);
    b1 = take(H);
    s1 = take(H);
    c1 = take(H);
    w2 = take(H * 3);
    b2 = take(3);
    size = o;
  }
};

struct Step {
  int64_t batch, num_params, num_tensors, num_sets;
  const int64_t* sizes;
  const int32_t* noise_flags;
  const int32_t* sets;
  bool noise, use_dormancy, parts;
  float step_mult, exp_mult;
  Layout layout;
  // inputs: gradient and parameter per tensor (each leaf its own buffer, batch
  // elements one after another); dormancy per tensor a vector of its period
  // (element j reads entry j mod period) at dormancy_offsets[t], dormancy_size
  // floats per batch element
  std::vector<const float*> grads, params;
  std::vector<int64_t> dormancy_offsets;
  const int64_t* dormancy_periods;
  int64_t dormancy_size;
  const float *momentum, *carry, *dormancy, *weights, *layer_props, *schedule;
  const uint32_t* keys;
  // outputs
  float *momentum_out, *carry_out, *det_out, *noise_out;
  // per tensor
  std::vector<int64_t> offsets;
  Step(int g, int h) : layout(g, h) {}
};

struct Chunk {
  int64_t b, t, start, end;  // batch element, tensor, element range in the step
};

// PASS 1: momenta and sums of squares --------------------------------------------

void stats_chunk(const Step& s, const Chunk& c, double* sums) {
  const int64_t P = s.num_params;
  // the tensor's own buffers: element e of the step is at [e - base]
  const int64_t base = s.offsets[c.t];
  const float* g_in = s.grads[c.t] + c.b * s.sizes[c.t];
  const float* p_in = s.params[c.t] + c.b * s.sizes[c.t];
  const float* m_in = s.momentum + c.b * NUM_MOMENTA * P;
  float* m_out = s.momentum_out + c.b * NUM_MOMENTA * P;
  vf acc[NUM_NORMALISED];
  for (auto& a : acc) a = splat(0.0f);
  for (int64_t e = c.start; e < c.end; e += L) {
    int n = int(std::min<int64_t>(L, c.end - e));
    vf valid = splat(1.0f);
    if (n < L)
      for (int l = n; l < L; ++l) valid[l] = 0.0f;
    vf g = vload_n(g_in + (e - base), n);
    vf p = vload_n(p_in + (e - base), n);
    acc[0] += p * p;
    for (int k = 0; k < NUM_MOMENTA; ++k) {
      float d = MOMENTUM_DECAYS[k];
      // fma(d, m, (1 - d) g), as XLA computes the reference's d m + (1 - d) g
      vf m = d * vload_n(m_in + k * P + e, n) + rounded((1.0f - d) * g);
      vstore_n(m_out + k * P + e, m, n);
      vf lg = vlog(vabs(m) + LOG_EPS) * valid;
      acc[1 + k] += sign_squared(m);
      acc[7 + k] += lg * lg;
    }
    vf lg = vlog(vabs(g) + LOG_EPS) * valid;
    acc[13] += sign_squared(g);
    acc[14] += lg * lg;
  }
  for (int ch = 0; ch < NUM_NORMALISED; ++ch) {
    double total = 0.0;
    for (int l = 0; l < L; ++l) total += acc[ch][l];
    sums[ch] = total;
  }
}

// Per tensor: the input kernel's rows scaled by 1/RMS, the tensor-constant
// features folded into the bias, and the sign features' lookup tables. Layout of
// the (tensor_rows(G), 3G) block, every row 3G wide:
//   rows 0-15   table A: per gate o, 16 entries (one per sign pattern of m0..m3)
//               of bias[o] + sum_j +-row_j[o], o-major (16 floats per gate);
//   rows 16-31  table B: the same for (m4, m5, g), 8 entries repeated twice, no bias;
//   rows 32-40  the other features' rows: parameter, log|m0..m5|, log|g|, dormancy
//               (dormancy unscaled, as the reference does not normalise it);
//   rows 41-47  the sign features' rows (sign m0..m5, sign g);
//   row 48      the bias;
//   rows 49-    the hidden kernel (G rows).
// The r and z gates' columns (o < 2G) are halved throughout, so the GRU's
// sigmoids get x / 2 without a multiply (halving is exact: the same floats).
// The seven sign features are +-1 except where a momentum or the gradient is
// exactly 0: a tile without such zeros looks their part of every gate up in the
// tables (two permutes instead of seven multiply-adds); a tile with one uses the
// rows.
constexpr int REST_ROWS[8] = {0, 7, 8, 9, 10, 11, 12, 14};
constexpr int SIGN_ROWS[7] = {1, 2, 3, 4, 5, 6, 13};
constexpr int TABLE_B = 16, REST = 32, SIGNS = 41, BIAS = 48, HIDDEN = 49;
inline int64_t tensor_rows(int G) { return HIDDEN + G; }

void tensor_weights(const Step& s, int64_t b, int64_t t, const double* sums,
                    float* out) {
  const Layout& ly = s.layout;
  const int G3 = 3 * ly.G;
  const float* w = s.weights + (b * s.num_sets + s.sets[t]) * ly.size;
  const float n = float(s.sizes[t]);
  float scale[NUM_NORMALISED];
  for (int ch = 0; ch < NUM_NORMALISED; ++ch) {
    float mean = float(sums[ch]) / n;
    scale[ch] = 1.0f / std::sqrt(NORM_EPS + mean);
  }
  auto scaled_row = [&](int ch, float* row) {
    for (int o = 0; o < G3; ++o) row[o] = w[ly.wi + ch * G3 + o] * scale[ch];
  };
  for (int r = 0; r < 8; ++r) scaled_row(REST_ROWS[r], out + (REST + r) * G3);
  for (int o = 0; o < G3; ++o)
    out[(REST + 8) * G3 + o] = w[ly.wi + DORMANCY_ROW * G3 + o];
  for (int r = 0; r < 7; ++r) scaled_row(SIGN_ROWS[r], out + (SIGNS + r) * G3);
  const float tp = s.schedule[b * 2], bp = s.schedule[b * 2 + 1];
  const float lp = s.layer_props[b * s.num_tensors + t];
  const float* sign = out + SIGNS * G3;
  for (int o = 0; o < G3; ++o) {
    const float bias = w[ly.bi + o] + tp * w[ly.wi + 15 * G3 + o] +
                       lp * w[ly.wi + 16 * G3 + o] + bp * w[ly.wi + 17 * G3 + o];
    out[BIAS * G3 + o] = bias;
    for (int idx = 0; idx < 16; ++idx) {
      float ta = bias, tb = 0.0f;
      for (int j = 0; j < 4; ++j) ta += ((idx >> j) & 1 ? -1.0f : 1.0f) * sign[j * G3 + o];
      for (int j = 0; j < 3; ++j)
        tb += ((idx >> j) & 1 ? -1.0f : 1.0f) * sign[(4 + j) * G3 + o];
      out[o * 16 + idx] = ta;
      out[TABLE_B * G3 + o * 16 + idx] = tb;
    }
  }
  for (int64_t i = 0; i < int64_t(ly.G) * G3; ++i) out[HIDDEN * G3 + i] = w[ly.wh + i];
  // halve the r and z gates' columns: the rows' first 2G columns, and the tables'
  // first 2G gates (16 entries each)
  for (int r = REST; r < tensor_rows(ly.G); ++r)
    for (int o = 0; o < 2 * ly.G; ++o) out[r * G3 + o] *= 0.5f;
  for (int64_t i = 0; i < 2 * ly.G * 16; ++i) {
    out[i] *= 0.5f;
    out[TABLE_B * G3 + i] *= 0.5f;
  }
}

// PASS 2: the network on every tile ----------------------------------------------

// out[o] += sum_i x[i] w[i * ld + o] for o < NO, in groups of 8 outputs whose
// accumulators stay in registers through the whole sum.
template <int NO, int NI>
inline void matvec(vf* out, const vf* x, const float* w, int ld) {
  constexpr int GROUP = NO < 8 ? NO : 8;
  static_assert(NO % GROUP == 0, "outputs come in groups of 8");
#pragma GCC unroll 4
  for (int o = 0; o < NO; o += GROUP) {
    vf acc[GROUP];
#pragma GCC unroll 8
    for (int q = 0; q < GROUP; ++q) acc[q] = out[o + q];
#pragma GCC unroll 32
    for (int i = 0; i < NI; ++i) {
      const vf xi = x[i];
      const float* row = w + i * ld + o;
#pragma GCC unroll 8
      for (int q = 0; q < GROUP; ++q) acc[q] += xi * row[q];
    }
#pragma GCC unroll 8
    for (int q = 0; q < GROUP; ++q) out[o + q] = acc[q];
  }
}

// flax LayerNorm(Dense(x)) then relu, the centring already in kernel and bias.
template <int IN, int H>
inline void dense_norm_relu(const vf* x, const float* w, const float* b,
                            const float* scale, const float* shift, vf* y) {
#pragma GCC unroll 32
  for (int o = 0; o < H; ++o) y[o] = splat(b[o]);
  matvec<H, IN>(y, x, w, H);
  // four partial sums: a chain of dependent adds a quarter as long
  vf part[4] = {y[0] * y[0], y[1] * y[1], y[2] * y[2], y[3] * y[3]};
#pragma GCC unroll 32
  for (int o = 4; o < H; ++o) part[o % 4] += y[o] * y[o];
  vf var = (part[0] + part[1]) + (part[2] + part[3]);
  vf rs = 1.0f / vsqrt(var * (1.0f / H) + LN_EPS);
#pragma GCC unroll 32
  for (int o = 0; o < H; ++o)
    y[o] = vmax(y[o] * (rs * scale[o]) + shift[o], splat(0.0f));
}

// The head's first NO outputs (of 3) in four partial sums each (three outputs
// alone are too few independent chains to keep the multiply-adds busy).
template <int NO, int H>
inline void head(vf* out, const vf* a, const float* w, const float* b) {
  constexpr int Q = H / 4;
  vf part[3][NO] = {};
#pragma GCC unroll 3
  for (int k = 0; k < NO; ++k) out[k] = splat(b[k]);
  matvec<NO, Q>(out, a, w, 3);
#pragma GCC unroll 3
  for (int j = 0; j < 3; ++j) matvec<NO, Q>(part[j], a + (j + 1) * Q, w + 3 * (j + 1) * Q, 3);
#pragma GCC unroll 3
  for (int k = 0; k < NO; ++k) out[k] = (out[k] + part[0][k]) + (part[1][k] + part[2][k]);
}

// gates[o] = bias[o] + the sign features' part: looked up in the tensor's tables
// where no momentum or gradient in the tile is exactly 0, from the rows otherwise.
template <int G3>
inline void sign_part(vf* gates, const vf* m, vf g, const float* tw, const float* bias) {
#if defined(__AVX512F__)
  static_assert(L == 16, "a table of 16 entries is one register");
  vi zero = g == 0.0f;
#pragma GCC unroll 6
  for (int k = 0; k < NUM_MOMENTA; ++k) zero |= m[k] == 0.0f;
  if (!_mm512_test_epi32_mask((__m512i)zero, (__m512i)zero)) {
    // bit j of a lane's index: the j-th feature's sign bit
    vu ia = ((vu)m[0] >> 31) | (((vu)m[1] >> 30) & 2u) | (((vu)m[2] >> 29) & 4u) |
            (((vu)m[3] >> 28) & 8u);
    vu ib = ((vu)m[4] >> 31) | (((vu)m[5] >> 30) & 2u) | (((vu)g >> 29) & 4u);
#pragma GCC unroll 48
    for (int o = 0; o < G3; ++o)
      gates[o] = (vf)_mm512_permutexvar_ps((__m512i)ia, _mm512_loadu_ps(tw + o * 16)) +
                 (vf)_mm512_permutexvar_ps((__m512i)ib,
                                           _mm512_loadu_ps(tw + TABLE_B * G3 + o * 16));
    return;
  }
#endif
  vf signs[7];
#pragma GCC unroll 6
  for (int k = 0; k < NUM_MOMENTA; ++k) signs[k] = vsign(m[k]);
  signs[6] = vsign(g);
#pragma GCC unroll 48
  for (int o = 0; o < G3; ++o) gates[o] = splat(bias[o]);
  matvec<G3, 7>(gates, signs, tw + SIGNS * G3, G3);
}

// Dormancy of the tile's elements j .. j + n - 1 of a tensor whose dormancy has
// the given period (entry j mod period): one value, a run of whole tiles (a
// period that is a multiple of the tile, or the whole tensor), else per lane.
inline vf dormancy_tile(const float* d, int64_t period, int64_t j, int n) {
  if (period == 1) return splat(d[0]);
  if (period % L == 0) return vload_n(d + j % period, n);
  if (j + n <= period) return vload_n(d + j, n);
  vf v = splat(0.0f);
  for (int l = 0; l < n; ++l) v[l] = d[(j + l) % period];
  return v;
}

// Pass 2 on one chunk; *total gets the sum of its update (deterministic part
// plus noise) for the mean shift.
template <int G, int H>
void network_chunk(const Step& s, const Chunk& c, const float* tw, double* total) {
  constexpr int G3 = 3 * G;
  const Layout& ly = s.layout;
  const int64_t P = s.num_params;
  const float* w = s.weights + (c.b * s.num_sets + s.sets[c.t]) * ly.size;
  const int64_t base = s.offsets[c.t];
  const float* g_in = s.grads[c.t] + c.b * s.sizes[c.t];
  const float* p_in = s.params[c.t] + c.b * s.sizes[c.t];
  const float* m_new = s.momentum_out + c.b * NUM_MOMENTA * P;
  const float* h_in = s.carry + c.b * G * P;
  const float* d_in = s.use_dormancy ? s.dormancy + c.b * s.dormancy_size +
                                            s.dormancy_offsets[c.t]
                                      : nullptr;
  const int64_t period = s.dormancy_periods[c.t];
  float* h_out = s.carry_out + c.b * G * P;
  // the deterministic part and the noise apart (parts), or their sum in det_out
  float* det_out = s.det_out + c.b * P;
  float* noise_out = s.noise && s.parts ? s.noise_out + c.b * P : nullptr;
  const bool noised = s.noise && s.noise_flags[c.t];
  const uint32_t k0 = s.keys[c.b * 2], k1 = s.keys[c.b * 2 + 1];
  const float* bias = tw + BIAS * G3;
  vf sum = splat(0.0f);

  for (int64_t e = c.start; e < c.end; e += L) {
    const int n = int(std::min<int64_t>(L, c.end - e));
    // the features of the tile (unscaled: the scale is in the rows); the signs
    // of the momenta and the gradient are taken where they are used
    vf m[NUM_MOMENTA], rest[9];
    rest[0] = vload_n(p_in + (e - base), n);
#pragma GCC unroll 6
    for (int k = 0; k < NUM_MOMENTA; ++k) {
      m[k] = vload_n(m_new + k * P + e, n);
      rest[1 + k] = vlog(vabs(m[k]) + LOG_EPS);
    }
    vf g = vload_n(g_in + (e - base), n);
    rest[7] = vlog(vabs(g) + LOG_EPS);
    rest[8] = d_in ? dormancy_tile(d_in, period, e - base, n) : splat(0.0f);
    vf h[G];
#pragma GCC unroll 16
    for (int j = 0; j < G; ++j) h[j] = vload_n(h_in + j * P + e, n);

    // GRU (flax GRUCell): r and z sum input and hidden parts; n keeps them apart
    vf gates[G3], gh_n[G];
    sign_part<G3>(gates, m, g, tw, bias);
    if (d_in) {
      matvec<G3, 9>(gates, rest, tw + REST * G3, G3);
    } else {
      matvec<G3, 8>(gates, rest, tw + REST * G3, G3);
    }
    matvec<2 * G, G>(gates, h, tw + HIDDEN * G3, G3);
#pragma GCC unroll 16
    for (int i = 0; i < G; ++i) gh_n[i] = splat(w[ly.bhn + i]);
    matvec<G, G>(gh_n, h, tw + HIDDEN * G3 + 2 * G, G3);
    // r and z: the reference's sigmoid, 0.5 tanh(x / 2) + 0.5, of gates that come
    // halved (their weights are halved per tensor: exact). Every tanh of r and z
    // first, then n's, each sigmoid's last step where it is used: the order GCC
    // schedules best (llvm-mca: 5% fewer cycles a tile than one loop doing all).
#pragma GCC unroll 32
    for (int i = 0; i < 2 * G; ++i) gates[i] = vtanh(gates[i]);
    vf hn[G];
#pragma GCC unroll 16
    for (int i = 0; i < G; ++i) {
      const vf r = 0.5f * gates[i] + 0.5f;
      hn[i] = gates[2 * G + i] + r * gh_n[i];
    }
#pragma GCC unroll 16
    for (int i = 0; i < G; ++i) hn[i] = vtanh(hn[i]);
#pragma GCC unroll 16
    for (int i = 0; i < G; ++i) {
      const vf z = 0.5f * gates[G + i] + 0.5f;
      hn[i] = (1.0f - z) * hn[i] + z * h[i];
      vstore_n(h_out + i * P + e, hn[i], n);
    }

    // MLP
    vf a0[H], a1[H];
    dense_norm_relu<G, H>(hn, w + ly.w0, w + ly.b0, w + ly.s0, w + ly.c0, a0);
    dense_norm_relu<H, H>(a0, w + ly.w1, w + ly.b1, w + ly.s1, w + ly.c1, a1);
    // the head's third output (the noise's scale) only where the noise applies
    vf out[3];
    if (noised) {
      head<3, H>(out, a1, w + ly.w2, w + ly.b2);
    } else {
      head<2, H>(out, a1, w + ly.w2, w + ly.b2);
    }

    vf det = rounded(s.step_mult * out[0]) * vexp(s.exp_mult * out[1]);
    vf u = det;
    if (s.noise) {
      vf nz = noised ? rounded(s.step_mult * out[2]) * normal_draws(k0, k1, e)
                     : splat(0.0f);
      if (noise_out) vstore_n(noise_out + e, nz, n);
      u = det + nz;
    }
    vstore_n(det_out + e, s.parts ? det : u, n);
    if (n < L)
      for (int l = n; l < L; ++l) u[l] = 0.0f;
    sum += u;
  }
  double chunk_total = 0.0;
  for (int l = 0; l < L; ++l) chunk_total += sum[l];
  *total = chunk_total;
}

// PARALLEL FOR ------------------------------------------------------------------

// Runs fn(0..n-1) on the calling thread and up to threads - 1 pool tasks. Indices
// are claimed from a shared counter, so a pool task that starts late (or never)
// cannot stall the call: the caller does whatever is left and waits only for
// indices already claimed, sleeping rather than spinning (on a loaded machine the
// task it waits for may not be running). The shared state outlives the call.
template <typename F>
void parallel_for(ffi::ThreadPool& pool, int threads, int64_t n, const F& fn) {
  if (threads <= 1 || n <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mutex;
    std::condition_variable finished;
  };
  auto state = std::make_shared<State>();
  const F* f = &fn;
  auto work = [state, n, f]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < n;) {
      (*f)(i);
      if (state->done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->finished.notify_all();
      }
    }
  };
  int tasks = int(std::min<int64_t>(threads - 1, n - 1));
  for (int k = 0; k < tasks; ++k) pool.Schedule(decltype(work)(work));
  work();
  std::unique_lock<std::mutex> lock(state->mutex);
  state->finished.wait(lock, [&] { return state->done.load() == n; });
}

ffi::Error OpenStepImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> momentum,
                        ffi::Buffer<ffi::F32> carry, ffi::Buffer<ffi::F32> dormancy,
                        ffi::Buffer<ffi::F32> weights,
                        ffi::Buffer<ffi::F32> layer_props,
                        ffi::Buffer<ffi::F32> schedule, ffi::Buffer<ffi::U32> keys,
                        ffi::RemainingArgs leaves,
                        ffi::ResultBuffer<ffi::F32> momentum_out,
                        ffi::ResultBuffer<ffi::F32> carry_out,
                        ffi::ResultBuffer<ffi::F32> det_out,
                        ffi::ResultBuffer<ffi::F32> noise_out,
                        ffi::ResultBuffer<ffi::F32> total_out,
                        ffi::Span<const int64_t> sizes,
                        ffi::Span<const int64_t> dormancy_periods,
                        ffi::Span<const int32_t> noise_flags,
                        ffi::Span<const int32_t> sets, int32_t cell_features,
                        int32_t hidden_size, bool noise, bool use_dormancy,
                        bool parts, float step_mult, float exp_mult,
                        int32_t threads) {
  Step s(cell_features, hidden_size);
  s.num_tensors = int64_t(sizes.size());
  if (int64_t(noise_flags.size()) != s.num_tensors ||
      int64_t(sets.size()) != s.num_tensors ||
      int64_t(dormancy_periods.size()) != s.num_tensors)
    return ffi::Error::InvalidArgument("open_step: per-tensor attributes differ in length");
  if (int64_t(leaves.size()) != 2 * s.num_tensors)
    return ffi::Error::InvalidArgument("open_step: expected a gradient and a parameter buffer per tensor");
  s.num_params = 0;
  s.dormancy_size = 0;
  for (int64_t t = 0; t < s.num_tensors; ++t) {
    if (sizes[t] <= 0 || dormancy_periods[t] <= 0 || sizes[t] % dormancy_periods[t])
      return ffi::Error::InvalidArgument("open_step: a tensor's size is not a positive multiple of its dormancy period");
    s.offsets.push_back(s.num_params);
    s.num_params += sizes[t];
    s.dormancy_offsets.push_back(s.dormancy_size);
    s.dormancy_size += dormancy_periods[t];
  }
  const int64_t P = s.num_params;
  const int64_t num_elements = int64_t(momentum.element_count());
  if (num_elements % (NUM_MOMENTA * P))
    return ffi::Error::InvalidArgument("open_step: momentum size is not a multiple of 6 x the parameter count");
  s.batch = num_elements / (NUM_MOMENTA * P);
  const int G = cell_features;
  s.num_sets = int64_t(weights.element_count()) / (s.batch * s.layout.size);
  if (s.num_sets * s.batch * s.layout.size != int64_t(weights.element_count()))
    return ffi::Error::InvalidArgument("open_step: packed weights have the wrong size");
  for (int64_t t = 0; t < s.num_tensors; ++t) {
    auto grad = leaves.get<ffi::Buffer<ffi::F32>>(t);
    auto param = leaves.get<ffi::Buffer<ffi::F32>>(s.num_tensors + t);
    if (!grad.has_value() || !param.has_value())
      return ffi::Error::InvalidArgument("open_step: gradients and parameters must be float32");
    if (int64_t(grad->element_count()) != s.batch * sizes[t] ||
        int64_t(param->element_count()) != s.batch * sizes[t])
      return ffi::Error::InvalidArgument("open_step: a gradient or parameter does not match its tensor's size");
    s.grads.push_back(grad->typed_data());
    s.params.push_back(param->typed_data());
  }
  if (int64_t(carry.element_count()) != s.batch * G * P ||
      (use_dormancy && int64_t(dormancy.element_count()) != s.batch * s.dormancy_size) ||
      int64_t(det_out->element_count()) != s.batch * P ||
      (noise && parts && int64_t(noise_out->element_count()) != s.batch * P) ||
      int64_t(layer_props.element_count()) != s.batch * s.num_tensors ||
      int64_t(schedule.element_count()) != s.batch * 2 ||
      int64_t(keys.element_count()) != s.batch * 2 ||
      int64_t(total_out->element_count()) != s.batch)
    return ffi::Error::InvalidArgument("open_step: input shapes do not match");
  s.sizes = sizes.begin();
  s.dormancy_periods = dormancy_periods.begin();
  s.noise_flags = noise_flags.begin();
  s.sets = sets.begin();
  s.noise = noise;
  s.use_dormancy = use_dormancy;
  s.parts = parts;
  s.step_mult = step_mult;
  s.exp_mult = exp_mult;
  s.momentum = momentum.typed_data();
  s.carry = carry.typed_data();
  s.dormancy = dormancy.typed_data();
  s.weights = weights.typed_data();
  s.layer_props = layer_props.typed_data();
  s.schedule = schedule.typed_data();
  s.keys = keys.typed_data();
  s.momentum_out = momentum_out->typed_data();
  s.carry_out = carry_out->typed_data();
  s.det_out = det_out->typed_data();
  s.noise_out = noise_out->typed_data();

  void (*network)(const Step&, const Chunk&, const float*, double*);
  if (G == 8 && hidden_size == 16) {
    network = network_chunk<8, 16>;
  } else if (G == 16 && hidden_size == 32) {
    network = network_chunk<16, 32>;
  } else {
    return ffi::Error::InvalidArgument("open_step: only (8, 16) and (16, 32) networks are built");
  }

  std::vector<Chunk> chunks;
  std::vector<int64_t> first_chunk;  // per (batch element, tensor)
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t t = 0; t < s.num_tensors; ++t) {
      first_chunk.push_back(int64_t(chunks.size()));
      const int64_t begin = s.offsets[t], end = begin + sizes[t];
      for (int64_t e = begin; e < end; e += CHUNK)
        chunks.push_back({b, t, e, std::min(end, e + CHUNK)});
    }
  }
  first_chunk.push_back(int64_t(chunks.size()));
  const int64_t num_chunks = int64_t(chunks.size());
  int workers = threads > 0 ? threads : int(std::max<int64_t>(1, pool.num_threads()));

  std::vector<double> sums(num_chunks * NUM_NORMALISED);
  parallel_for(pool, workers, num_chunks, [&](int64_t i) {
    stats_chunk(s, chunks[i], &sums[i * NUM_NORMALISED]);
  });

  // Per (batch element, tensor): the sums reduced in chunk order, then the
  // tensor's scaled rows.
  const int64_t num_pairs = s.batch * s.num_tensors;
  const int64_t tw_size = tensor_rows(G) * 3 * G;
  std::vector<float> tw(num_pairs * tw_size);
  parallel_for(pool, workers, num_pairs, [&](int64_t pair) {
    double total[NUM_NORMALISED] = {};
    for (int64_t i = first_chunk[pair]; i < first_chunk[pair + 1]; ++i)
      for (int ch = 0; ch < NUM_NORMALISED; ++ch)
        total[ch] += sums[i * NUM_NORMALISED + ch];
    tensor_weights(s, pair / s.num_tensors, pair % s.num_tensors, total,
                   &tw[pair * tw_size]);
  });

  std::vector<double> chunk_totals(num_chunks);
  parallel_for(pool, workers, num_chunks, [&](int64_t i) {
    const Chunk& c = chunks[i];
    network(s, c, &tw[(c.b * s.num_tensors + c.t) * tw_size], &chunk_totals[i]);
  });
  // the update's sum per batch element, in chunk order (deterministic)
  float* total = total_out->typed_data();
  for (int64_t b = 0; b < s.batch; ++b) {
    double t = 0.0;
    for (int64_t i = first_chunk[b * s.num_tensors]; i < first_chunk[(b + 1) * s.num_tensors]; ++i)
      t += chunk_totals[i];
    total[b] = float(t);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LoptOpenStep, OpenStepImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // momentum
                                  .Arg<ffi::Buffer<ffi::F32>>()  // carry
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dormancy
                                  .Arg<ffi::Buffer<ffi::F32>>()  // weights
                                  .Arg<ffi::Buffer<ffi::F32>>()  // layer_props
                                  .Arg<ffi::Buffer<ffi::F32>>()  // schedule
                                  .Arg<ffi::Buffer<ffi::U32>>()  // keys
                                  .RemainingArgs()  // gradients, then parameters
                                  .Ret<ffi::Buffer<ffi::F32>>()  // momentum
                                  .Ret<ffi::Buffer<ffi::F32>>()  // carry
                                  .Ret<ffi::Buffer<ffi::F32>>()  // det, or the update
                                  .Ret<ffi::Buffer<ffi::F32>>()  // noise (with parts)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // total
                                  .Attr<ffi::Span<const int64_t>>("sizes")
                                  .Attr<ffi::Span<const int64_t>>("dormancy_periods")
                                  .Attr<ffi::Span<const int32_t>>("noise_flags")
                                  .Attr<ffi::Span<const int32_t>>("sets")
                                  .Attr<int32_t>("cell_features")
                                  .Attr<int32_t>("hidden_size")
                                  .Attr<bool>("noise")
                                  .Attr<bool>("use_dormancy")
                                  .Attr<bool>("parts")
                                  .Attr<float>("step_mult")
                                  .Attr<float>("exp_mult")
                                  .Attr<int32_t>("threads"));

// A C symbol reporting the kernel's build, so Python can check it loaded the
// right library before registering it.
extern "C" int lopt_open_step_abi() { return 2; }
