/*
 * actlab's hand-written CPU kernels for SAU and ASH (float32 and bfloat16 storage, float32 math).
 *
 * Built on first use by actlab/functional/native.py (cc -O3 -march=native -fopenmp, cached per
 * machine) and called through ctypes with raw data pointers. Plain C loops written so that the
 * compiler vectorises them: exp is a branch-free polynomial (Cephes' expf coefficients, ~1 ulp),
 * erf the Abramowitz & Stegun 7.1.26 form that shares exp(-u^2) with SAU's Gaussian term.
 *
 * Compiled without -ffast-math or -fassociative-math (which would let the compiler regroup
 * overflow-safe expressions such as x/2 - mu/2); sums are vectorised with `omp simd reduction`.
 *
 * Parallel work is split into pieces whose boundaries do not depend on the thread count, and every
 * sum is taken inside one piece in a fixed order, so results are bitwise the same for any number
 * of threads.
 *
 * SAU (Biswas et al., arXiv:2109.13210), with u = n x / sqrt(2), a1 = (1+alpha)/2,
 * a2 = (1-alpha)/2, coef = c / (n sqrt(2 pi)) (c = 1 - alpha exact, 1 paper):
 *     G(x)      = a1 x + a2 x erf(u) + coef exp(-u^2)
 *     dG/dx     = a1 + a2 erf(u)                     (exact)
 *               = a1 + a2 erf(u) - alpha z phi(z)    (paper; z = n x)
 *     dG/dalpha = x erfc(u) / 2 - exp(-u^2) / (n sqrt(2 pi))   (exact; paper without the last term)
 * ASH (Lee et al., NeurIPS 2022), per sample over its m elements, s = sigmoid(2 alpha u),
 * u = x - mu - z sigma, gate = leak + (1 - leak) s:
 *     y = x gate;  q = g x (1 - leak) s (1 - s)
 *     dx = g gate + 2 alpha q + dmu / m + (x - mu) dsigma / (m sigma)
 *     dmu = -2 sum(alpha q),  dsigma = -2 sum(alpha z q)
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint16_t bf16;

static inline float bf16_load(const bf16 *p, long i) {
    uint32_t bits = (uint32_t)p[i] << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline void bf16_store(bf16 *p, long i, float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16; /* round to nearest even */
    p[i] = (bf16)(f != f ? 0x7FC0u : rounded);
}

static inline float f32_load(const float *p, long i) { return p[i]; }
static inline void f32_store(float *p, long i, float f) { p[i] = f; }

/* exp(x) for x in [-87, 88] (callers clamp): Cephes' polynomial, ~1 ulp */
static inline float exp_core(float x) {
    float k = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

/* exp(a) for a <= 0 (SAU's Gaussian, a = -u^2 > -50): no clamp needed */
static inline float exp_neg(float a) { return exp_core(a < -87.0f ? -87.0f : a); }

/* 1 + exp(-t): inf where exp(-t) overflows (t < -88), so that 1 / (1 + exp(-t)) is exactly 0 there;
 * for t > 87 exp(-t) is taken at -87 (1.6e-38, which 1 + ... rounds away: the sigmoid is 1).
 * A NaN t stays NaN (the clamps' comparisons are false for NaN). */
static inline float one_plus_exp_neg(float t) {
    float a = -t;
    float e = exp_core(a < -87.0f ? -87.0f : (a > 88.0f ? 88.0f : a));
    return a > 88.0f ? INFINITY : 1.0f + e;
}

static inline float sigmoid_poly(float t) { return 1.0f / one_plus_exp_neg(t); }

#define GAUSS_CUT 50.0f /* exp(-u^2) is taken as 0 for u^2 >= 50, as in actlab.functional.sau */

/* (erfc(|u|) tail, exp(-u^2)) by A&S 7.1.26 with the shared exponential */
static inline float erfc_tail(float u, float *gauss) {
    float q = u * u;
    float e = q < GAUSS_CUT ? exp_neg(-q) : 0.0f;
    float t = 1.0f / (1.0f + 0.3275911f * fabsf(u));
    float poly = (((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t;
    *gauss = e;
    return (poly + 0.254829592f) * t * e;
}

static inline long min_long(long a, long b) { return a < b ? a : b; }

/* ASH's second pass over a sample (in cache) prefetches the next sample in blocks of this many
 * elements, so that memory traffic overlaps the gate's arithmetic */
#define PREFETCH_BLOCK 256

static inline void prefetch_range(const void *p, long bytes) {
    for (long off = 0; off < bytes; off += 64) __builtin_prefetch((const char *)p + off, 0, 3);
}

/* Blocks of SAU_BLOCK elements whose |u| = |x| n / sqrt(2) all reach sqrt(GAUSS_CUT) take a short
 * path: there exp(-u^2) is 0 and erf(u) = +-1 exactly in the full formula too, so the values are
 * bitwise the same; with the paper's n = 20000 that is every block without an |x| < 3.6e-4. */
#define SAU_BLOCK 64
/* ASH's statistics: float32 partial sums over blocks of ASH_CHUNK elements, added in float64 */
#define ASH_CHUNK 4096

#define T float
#define LOAD f32_load
#define STORE f32_store
#define FN(name) name##_f32
#include "kernels.inc"
#undef T
#undef LOAD
#undef STORE
#undef FN

#define T bf16
#define LOAD bf16_load
#define STORE bf16_store
#define FN(name) name##_bf16
#include "kernels.inc"
#undef T
#undef LOAD
#undef STORE
#undef FN
