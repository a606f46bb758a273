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

/* exp(a): inf above 88, 0 below -87 (no subnormal results), Cephes polynomial in between. */
static inline float exp_poly(float a) {
    float x = a < -87.0f ? -87.0f : (a > 88.0f ? 88.0f : a);
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
    float res = p * scale;
    res = a > 88.0f ? INFINITY : res;
    res = a < -87.0f ? 0.0f : res;
    return a != a ? a : res;
}

/* 1 / (1 + exp(-t)): exactly 0 for t < -88, exactly 1 for t > 87 (overflow-free for any t). */
static inline float sigmoid_poly(float t) { return 1.0f / (1.0f + exp_poly(-t)); }

#define GAUSS_CUT 50.0f /* exp(-u^2) is taken as 0 for u^2 >= 50, as in actlab.functional.sau */

/* (erfc(|u|) tail, exp(-u^2)) by A&S 7.1.26 with the shared exponential */
static inline float erfc_tail(float u, float *gauss) {
    float q = u * u;
    float e = q < GAUSS_CUT ? exp_poly(-q) : 0.0f;
    float t = 1.0f / (1.0f + 0.3275911f * fabsf(u));
    float poly = (((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t;
    *gauss = e;
    return (poly + 0.254829592f) * t * e;
}

static inline long min_long(long a, long b) { return a < b ? a : b; }

/* ------------------------------------------------------------------------------------------- */
/* SAU: rows of `m` elements (the last may be shorter); row r uses parameter r % groups.       */
/* ------------------------------------------------------------------------------------------- */
#define DEFINE_SAU(SUFFIX, T, LOAD, STORE)                                                       \
    void sau_fwd_##SUFFIX(const T *x, T *y, long total, long m, long groups,                   \
                          const float *alpha, const float *n, int paper, int nthreads) {        \
        long rows = (total + m - 1) / m;                                                         \
        _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                       \
        for (long r = 0; r < rows; ++r) {                                                        \
            long g = r % groups, begin = r * m, len = min_long(m, total - begin);               \
            float a = alpha[g], nn = n[g];                                                       \
            float a1 = 0.5f * (1.0f + a), a2 = 0.5f * (1.0f - a);                               \
            float cu = nn * 0.70710678118654752f;                                                \
            float coef = (paper ? 1.0f : 1.0f - a) * (0.3989422804014327f / nn);                 \
            const T *xr = x + begin;                                                             \
            T *yr = y + begin;                                                                   \
            for (long i = 0; i < len; ++i) {                                                     \
                float xv = LOAD(xr, i), u = xv * cu, e;                                          \
                float tail = erfc_tail(u, &e);                                                   \
                float erf = u < 0.0f ? tail - 1.0f : 1.0f - tail;                                \
                STORE(yr, i, xv * (a1 + a2 * erf) + coef * e);                                  \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    /* one row of the backward; the flags are constants at each call site (no branch inside) */ \
    static inline double sau_bwd_row_##SUFFIX(const T *gr, const T *xr, T *dxr, long len,        \
                                              float a, float nn, const int paper,               \
                                              const int want_x, const int want_alpha) {         \
        float a1 = 0.5f * (1.0f + a), a2 = 0.5f * (1.0f - a);                                   \
        float cu = nn * 0.70710678118654752f;                                                    \
        float inv_n = 0.3989422804014327f / nn;                                                  \
        float zphi_coef = a * 0.3989422804014327f * 1.4142135623730951f; /* alpha z phi / u */  \
        double acc = 0.0;                                                                        \
        for (long c0 = 0; c0 < len; c0 += 2048) {                                                \
            long c1 = min_long(len, c0 + 2048);                                                  \
            float part = 0.0f;                                                                   \
            _Pragma("omp simd reduction(+:part)")                                                \
            for (long i = c0; i < c1; ++i) {                                                     \
                float xv = LOAD(xr, i), gv = LOAD(gr, i), u = xv * cu, e;                        \
                float tail = erfc_tail(u, &e);                                                   \
                if (want_x) {                                                                    \
                    float erf = u < 0.0f ? tail - 1.0f : 1.0f - tail;                            \
                    float d = a1 + a2 * erf;                                                     \
                    if (paper) {                                                                 \
                        float uc = u < -7.0710678f ? -7.0710678f : (u > 7.0710678f ? 7.0710678f : u); \
                        d -= zphi_coef * uc * e;                                                 \
                    }                                                                            \
                    STORE(dxr, i, gv * d);                                                       \
                }                                                                                \
                if (want_alpha) {                                                                \
                    float erfc = u < 0.0f ? 2.0f - tail : tail;                                  \
                    float da = 0.5f * xv * erfc;                                                 \
                    if (!paper) da -= inv_n * e;                                                 \
                    part += gv * da;                                                             \
                }                                                                                \
            }                                                                                    \
            acc += part;                                                                         \
        }                                                                                        \
        return acc;                                                                              \
    }                                                                                            \
    /* gx (if not NULL) and per-row sums of g * dG/dalpha (if galpha_rows), in double */         \
    void sau_bwd_##SUFFIX(const T *grad, const T *x, T *gx, double *galpha_rows, long total,    \
                          long m, long groups, const float *alpha, const float *n, int paper,   \
                          int nthreads) {                                                        \
        long rows = (total + m - 1) / m;                                                         \
        _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                       \
        for (long r = 0; r < rows; ++r) {                                                        \
            long g = r % groups, b = r * m, len = min_long(m, total - b);                        \
            const T *gr = grad + b, *xr = x + b;                                                 \
            T *dxr = gx ? gx + b : NULL;                                                         \
            float a = alpha[g], nn = n[g];                                                       \
            double acc = 0.0;                                                                    \
            if (paper) {                                                                         \
                if (gx && galpha_rows) acc = sau_bwd_row_##SUFFIX(gr, xr, dxr, len, a, nn, 1, 1, 1); \
                else if (gx) sau_bwd_row_##SUFFIX(gr, xr, dxr, len, a, nn, 1, 1, 0);             \
                else acc = sau_bwd_row_##SUFFIX(gr, xr, dxr, len, a, nn, 1, 0, 1);               \
            } else {                                                                             \
                if (gx && galpha_rows) acc = sau_bwd_row_##SUFFIX(gr, xr, dxr, len, a, nn, 0, 1, 1); \
                else if (gx) sau_bwd_row_##SUFFIX(gr, xr, dxr, len, a, nn, 0, 1, 0);             \
                else acc = sau_bwd_row_##SUFFIX(gr, xr, dxr, len, a, nn, 0, 0, 1);               \
            }                                                                                    \
            if (galpha_rows) galpha_rows[r] = acc;                                               \
        }                                                                                        \
    }

DEFINE_SAU(f32, float, f32_load, f32_store)
DEFINE_SAU(bf16, bf16, bf16_load, bf16_store)

/* ------------------------------------------------------------------------------------------- */
/* ASH: x is (samples, groups, m); z, alpha per group; statistics over each sample's groups*m. */
/* ------------------------------------------------------------------------------------------- */
#define ASH_CHUNK 4096

#define DEFINE_ASH(SUFFIX, T, LOAD, STORE)                                                       \
    void ash_fwd_##SUFFIX(const T *x, T *y, float *mu_out, float *sigma_out, long samples,     \
                          long groups, long m, const float *z, const float *alpha, float eps,   \
                          float leak, int nthreads) {                                            \
        long count = groups * m;                                                                 \
        _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                       \
        for (long s = 0; s < samples; ++s) {                                                     \
            const T *xs = x + s * count;                                                         \
            T *ys = y + s * count;                                                               \
            float k = LOAD(xs, 0);                                                               \
            double s1 = 0.0, s2 = 0.0;                                                           \
            for (long c0 = 0; c0 < count; c0 += ASH_CHUNK) {                                     \
                long c1 = min_long(count, c0 + ASH_CHUNK);                                       \
                float p1 = 0.0f, p2 = 0.0f;                                                      \
                _Pragma("omp simd reduction(+:p1, p2)")                                          \
                for (long i = c0; i < c1; ++i) {                                                 \
                    float d = LOAD(xs, i) - k;                                                   \
                    p1 += d;                                                                     \
                    p2 += d * d;                                                                 \
                }                                                                                \
                if (!isfinite(p1) || !isfinite(p2)) { /* |x| near the float maximum */         \
                    double q1 = 0.0, q2 = 0.0;                                                   \
                    for (long i = c0; i < c1; ++i) {                                             \
                        double d = (double)LOAD(xs, i) - (double)k;                              \
                        q1 += d;                                                                 \
                        q2 += d * d;                                                             \
                    }                                                                            \
                    s1 += q1;                                                                    \
                    s2 += q2;                                                                    \
                } else {                                                                         \
                    s1 += p1;                                                                    \
                    s2 += p2;                                                                    \
                }                                                                                \
            }                                                                                    \
            double mean = s1 / (double)count;                                                    \
            double var = s2 / (double)count - mean * mean;                                       \
            var = var < 0.0 ? 0.0 : var;                                                         \
            double sd = sqrt(var + (double)eps);                                                 \
            float mu = (float)((double)k + mean);                                                \
            float sigma = sd > 3.4028234663852886e38 ? 3.4028234663852886e38f : (float)sd;       \
            mu_out[s] = mu;                                                                      \
            sigma_out[s] = sigma;                                                                \
            for (long g = 0; g < groups; ++g) {                                                  \
                float half_thr = 0.5f * mu + 0.5f * (z[g] * sigma);                              \
                half_thr = half_thr > 1.7014117e38f ? 1.7014117e38f                              \
                         : (half_thr < -1.7014117e38f ? -1.7014117e38f : half_thr);             \
                float a4 = 4.0f * alpha[g];                                                      \
                const T *xg = xs + g * m;                                                        \
                T *yg = ys + g * m;                                                              \
                for (long i = 0; i < m; ++i) {                                                   \
                    float xv = LOAD(xg, i);                                                      \
                    float sg = sigmoid_poly(a4 * (0.5f * xv - half_thr));                        \
                    STORE(yg, i, xv * (leak + (1.0f - leak) * sg));                              \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    /* gx (if not NULL); per (sample, group) sums of q and q*u for the z and alpha gradients */ \
    int ash_bwd_##SUFFIX(const T *grad, const T *x, const float *mu_in, const float *sigma_in,  \
                         T *gx, double *sum_q, double *sum_qu, long samples, long groups,        \
                         long m, const float *z, const float *alpha, float leak, int nthreads) { \
        long count = groups * m;                                                                 \
        int failed = 0;                                                                          \
        _Pragma("omp parallel num_threads(nthreads) reduction(|:failed)")                        \
        {                                                                                        \
            float *gate = (float *)malloc(sizeof(float) * (size_t)count);                        \
            if (!gate) failed = 1;                                                               \
            _Pragma("omp for schedule(static)")                                                  \
            for (long s = 0; s < samples; ++s) {                                                 \
                if (!gate) continue;                                                             \
                const T *xs = x + s * count, *gs = grad + s * count;                             \
                float mu = mu_in[s], sigma = sigma_in[s];                                        \
                double dmu = 0.0, dsig = 0.0;                                                    \
                for (long g = 0; g < groups; ++g) {                                              \
                    float zs = z[g] * sigma, a2 = 2.0f * alpha[g], lk = 1.0f - leak;             \
                    const T *xg = xs + g * m, *gg = gs + g * m;                                  \
                    float *sg = gate + g * m;                                                    \
                    double aq = 0.0, aqu = 0.0;                                                  \
                    for (long c0 = 0; c0 < m; c0 += ASH_CHUNK) {                                 \
                        long c1 = min_long(m, c0 + ASH_CHUNK);                                   \
                        float pq = 0.0f, pqu = 0.0f;                                             \
                        _Pragma("omp simd reduction(+:pq, pqu)")                                 \
                        for (long i = c0; i < c1; ++i) {                                         \
                            float xv = LOAD(xg, i), gv = LOAD(gg, i);                            \
                            float u = (xv - mu) - zs;                                            \
                            float sv = sigmoid_poly(a2 * u);                                     \
                            float q = gv * (xv * (lk * sv * (1.0f - sv)));                       \
                            pq += q;                                                             \
                            pqu += q != 0.0f ? q * u : 0.0f;                                     \
                            sg[i] = sv;                                                          \
                        }                                                                        \
                        aq += pq;                                                                \
                        aqu += pqu;                                                              \
                    }                                                                            \
                    sum_q[s * groups + g] = aq;                                                  \
                    sum_qu[s * groups + g] = aqu;                                                \
                    dmu += -2.0 * alpha[g] * aq;                                                 \
                    dsig += -2.0 * alpha[g] * z[g] * aq;                                         \
                }                                                                                \
                if (!gx) continue;                                                               \
                float c_mu = (float)(dmu / (double)count);                                       \
                /* (x - mu) * c_sig as (x/2 - mu/2) * 2 c_sig: the halves cannot overflow */    \
                float c_sig2 = (float)(2.0 * dsig / ((double)count * (double)sigma));            \
                T *dx = gx + s * count;                                                          \
                for (long g = 0; g < groups; ++g) {                                              \
                    float a2 = 2.0f * alpha[g], lk = 1.0f - leak;                                \
                    const T *xg = xs + g * m, *gg = gs + g * m;                                  \
                    const float *sg = gate + g * m;                                              \
                    T *dg = dx + g * m;                                                          \
                    for (long i = 0; i < m; ++i) {                                               \
                        float xv = LOAD(xg, i), gv = LOAD(gg, i), sv = sg[i];                    \
                        float q = gv * (xv * (lk * sv * (1.0f - sv)));                           \
                        float v = gv * (leak + lk * sv) + a2 * q + c_mu + (0.5f * xv - 0.5f * mu) * c_sig2; \
                        STORE(dg, i, v);                                                         \
                    }                                                                            \
                }                                                                                \
            }                                                                                    \
            free(gate);                                                                          \
        }                                                                                        \
        return failed;                                                                           \
    }

DEFINE_ASH(f32, float, f32_load, f32_store)
DEFINE_ASH(bf16, bf16, bf16_load, bf16_store)
