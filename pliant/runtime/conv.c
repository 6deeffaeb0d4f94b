/* pliant: float32 NCHW 2-D convolution as im2col + BLAS sgemm, with a fused epilogue.
 *
 * One call convolves a whole batch: per image and group, blocks of output rows
 * are gathered (im2col: the (Cg*KH*KW) x (rows*OW) patch matrix; skipped for an
 * unpadded stride-1 1x1 convolution, whose patches are the input itself),
 * multiplied by the group's weights with the sgemm whose address the caller
 * passes (the BLAS NumPy loaded, so its thread pool is the only one woken), and
 * finished while the block is still in cache:
 *
 *     y = act(conv(x, w) + b + z)      (b per output channel, z a tensor of y's shape; both optional)
 *
 * act: 0 none, 1 max(v, 0), 2 min(max(v, lo), hi), 3 v < 0 ? alpha*v : v.
 * The block size bounds the scratch memory (one buffer per calling thread, kept
 * for the next call) and keeps a block's patches and results in cache.
 *
 * Entry (the kernel layer's calling convention): int pliant_kernel(void **p, const int64_t *s)
 *   p: x, w, b (or NULL), z (or NULL), y, params (float[3]: lo, hi, alpha)
 *   s: see the S_* indices below.  Returns 0, or -1 when the scratch buffer cannot be allocated.
 * The caller checks every size against the arrays before calling.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_N, S_C, S_H, S_W, S_M, S_KH, S_KW, S_OH, S_OW, S_SH, S_SW, S_DH, S_DW, S_PT, S_PL,
    S_GROUP, S_ACT, S_GEMM, S_ILP64, S_BLOCK, S_COUNT
};
enum { ROW_MAJOR = 101, NO_TRANS = 111 };

typedef void (*sgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                           const float *, int64_t, float, float *, int64_t);
typedef void (*sgemm32_fn)(int, int, int, int, int, int, float, const float *, int,
                           const float *, int, float, float *, int);

static __thread float *scratch;
static __thread int64_t scratch_cap;

static float *scratch_for(int64_t n) {
    if (n > scratch_cap) {
        free(scratch);
        scratch = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
        scratch_cap = scratch ? n : 0;
    }
    return scratch;
}

/* C = A (m x k) * B (k x n), row-major */
static void gemm(const int64_t *s, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float *c, int64_t ldc) {
    void *f = (void *)(intptr_t)s[S_GEMM];
    if (s[S_ILP64])
        ((sgemm64_fn)f)(ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
    else
        ((sgemm32_fn)f)(ROW_MAJOR, NO_TRANS, NO_TRANS, (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb,
                        0.0f, c, (int)ldc);
}

/* the patches of output rows [r0, r1) of one image's group (x: Cg x H x W) into cols (Cg*KH*KW x (r1-r0)*OW) */
static void im2col(const int64_t *s, const float *x, int64_t cg, int64_t r0, int64_t r1, float *cols) {
    const int64_t H = s[S_H], W = s[S_W], KH = s[S_KH], KW = s[S_KW], OW = s[S_OW];
    const int64_t SH = s[S_SH], SW = s[S_SW], DH = s[S_DH], DW = s[S_DW], PT = s[S_PT], PL = s[S_PL];
    const int64_t nc = (r1 - r0) * OW;
    for (int64_t c = 0; c < cg; c++) {
        for (int64_t kh = 0; kh < KH; kh++) {
            for (int64_t kw = 0; kw < KW; kw++) {
                float *dst = cols + ((c * KH + kh) * KW + kw) * nc;
                const int64_t off = kw * DW - PL; /* iw = ow*SW + off */
                /* [lo, hi): the output columns whose input column lies inside the image */
                int64_t lo = off >= 0 ? 0 : (-off + SW - 1) / SW;
                int64_t hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / SW + 1;
                if (lo > OW) lo = OW;
                if (hi > OW) hi = OW;
                if (hi < lo) hi = lo;
                for (int64_t oh = r0; oh < r1; oh++) {
                    float *d = dst + (oh - r0) * OW;
                    const int64_t ih = oh * SH - PT + kh * DH;
                    if (ih < 0 || ih >= H) {
                        memset(d, 0, (size_t)OW * sizeof(float));
                        continue;
                    }
                    const float *src = x + (c * H + ih) * W + off;
                    for (int64_t ow = 0; ow < lo; ow++) d[ow] = 0.0f;
                    if (SW == 1)
                        memcpy(d + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
                    else
                        for (int64_t ow = lo; ow < hi; ow++) d[ow] = src[ow * SW];
                    for (int64_t ow = hi; ow < OW; ow++) d[ow] = 0.0f;
                }
            }
        }
    }
}

/* y[i] = act(y[i] + bias + z[i]) over one row block */
static void epilogue(float *restrict y, const float *restrict z, int64_t n, float bias, int64_t act,
                     const float *params) {
    const float lo = params[0], hi = params[1], alpha = params[2];
    if (z) {
        for (int64_t i = 0; i < n; i++) y[i] += z[i];
    }
    switch (act) {
    case 1:
        for (int64_t i = 0; i < n; i++) { float v = y[i] + bias; y[i] = v < 0.0f ? 0.0f : v; /* NaN stays NaN, as np.maximum */ }
        break;
    case 2:
        for (int64_t i = 0; i < n; i++) { float v = y[i] + bias; v = v < lo ? lo : v; y[i] = v > hi ? hi : v; }
        break;
    case 3:
        for (int64_t i = 0; i < n; i++) { float v = y[i] + bias; y[i] = v < 0.0f ? alpha * v : v; }
        break;
    default:
        if (bias != 0.0f)
            for (int64_t i = 0; i < n; i++) y[i] += bias;
    }
}

int pliant_kernel(void **p, const int64_t *s) {
    const float *x = p[0], *w = p[1], *b = p[2], *z = p[3], *params = p[5];
    float *y = p[4];
    const int64_t N = s[S_N], C = s[S_C], H = s[S_H], W = s[S_W], M = s[S_M], KH = s[S_KH], KW = s[S_KW];
    const int64_t OH = s[S_OH], OW = s[S_OW], G = s[S_GROUP], act = s[S_ACT];
    const int64_t cg = C / G, mg = M / G, k = cg * KH * KW, ohw = OH * OW;
    const int direct = KH == 1 && KW == 1 && s[S_SH] == 1 && s[S_SW] == 1 && s[S_PT] == 0 && s[S_PL] == 0
                       && OH == H && OW == W;
    int64_t rows = s[S_BLOCK] / (k * OW > 0 ? k * OW : 1); /* output rows per block */
    if (rows < 1) rows = 1;
    if (rows > OH) rows = OH;
    float *cols = NULL;
    if (!direct) {
        cols = scratch_for(k * rows * OW);
        if (!cols) return -1;
    }
    for (int64_t n = 0; n < N; n++) {
        for (int64_t g = 0; g < G; g++) {
            const float *xg = x + (n * C + g * cg) * H * W;
            const float *wg = w + g * mg * k;
            float *yg = y + (n * M + g * mg) * ohw;
            const float *zg = z ? z + (n * M + g * mg) * ohw : NULL;
            for (int64_t r0 = 0; r0 < OH; r0 += rows) {
                const int64_t r1 = r0 + rows < OH ? r0 + rows : OH, j0 = r0 * OW, nc = (r1 - r0) * OW;
                if (direct) {
                    gemm(s, mg, nc, k, wg, k, xg + j0, ohw, yg + j0, ohw);
                } else {
                    im2col(s, xg, cg, r0, r1, cols);
                    gemm(s, mg, nc, k, wg, k, cols, nc, yg + j0, ohw);
                }
                if (b || z || act)
                    for (int64_t m = 0; m < mg; m++)
                        epilogue(yg + m * ohw + j0, zg ? zg + m * ohw + j0 : NULL, nc, b ? b[g * mg + m] : 0.0f,
                                 act, params);
            }
        }
    }
    return 0;
}
