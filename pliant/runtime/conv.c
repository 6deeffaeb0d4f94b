/* pliant: float32 NCHW 2-D convolution in one call: a register-blocked GEMM of our own, fed the patches
 * without an im2col matrix, and a fused epilogue,
 *
 *     y = act(conv(x, w) + z + b)      (b per output channel, z a tensor of y's shape; both optional)
 *
 * act: 0 none, 1 max(v, 0), 2 min(max(v, lo), hi), 3 v < 0 ? alpha*v : v.
 *
 * Per image and group the product is Y (mg x OH*OW) = W (mg x K) * P (K x OH*OW), K = Cg*KH*KW, P the
 * patch matrix.  The microkernel computes MR rows of Y by NR columns: MR rows of the weights (read in
 * place) broadcast against NR-wide rows of P, in registers, over K in blocks of KC; the last block applies
 * the epilogue as the tile is stored.  P is never built whole; its rows come (see "one call") from
 *   GATHER: NR-column panels (KC x NR contiguous) the task gathers from the input, any geometry;
 *   DIRECT: a zero-padded copy of the task's input rows, read in place (width stride 1);
 *   FLAT:   the input itself (an unpadded stride-1 1x1 convolution).
 * Where the output positions far outnumber the channels (S_SWAP), or the weights come as panels (S_WPACK), the
 * product is turned around instead: Y^T = P^T W^T, the weights as the B panels and the patches read in place by
 * broadcasts (see "weights as B").
 * The output columns (and, where they are few, the output channels) are cut into tasks that OpenMP
 * threads take in turn; nothing is shared between tasks but read-only input, so one `omp parallel`
 * region does the whole call (no other thread pool is woken).
 *
 * A width stride s > 1 (GATHER) first splits the task's input rows into s phases (x[.., t*s + p] at phase
 * p, position t), after which every window row is a contiguous run again, as for stride 1, and the gather
 * is masked vector loads (AVX-512) or plain copies.
 *
 * Entry (the kernel layer's calling convention): int pliant_kernel(void **p, const int64_t *s)
 *   p: x, w, b (or NULL), z (or NULL), y, params (float[3]: lo, hi, alpha)
 *   s: see the S_* indices below.  Returns 0, or -1 when a scratch buffer cannot be allocated.
 *   S_BT 1 (a product's B given transposed, by region units): x holds the 1x1 convolution's input
 *   transposed, x[position][channel], and the call must be FLAT with one image and one group; each tile's
 *   columns are packed from it (a small transpose in cache, instead of a whole one before the call).
 *   S_BT 2: x holds the product's B (C x OW) packed in panels of PANEL columns, x[p][k][c] = B[k][p*PANEL + c]
 *   (zeros past the last column), read in place: weights laid out once (pliant.transforms.pack_weights).
 *   Returns -2 where S_BT is set and the call is not such a product.
 *   S_ZROW 1: z is one row of OH*OW floats added to every output channel's row (a product's bias along its
 *   columns: y = act(conv(x, w) + z[col] + b)); one image and one group, or -2.
 *   S_SWAP q > 0: a convolution of one group, width stride 2 or more and no residual, with at least q times as
 *   many output positions as channels (and enough positions, few enough channels: SWAP_*), takes the weights
 *   as B (see "weights as B"); 0: never; < 0: every convolution of one group (tests).
 *   S_WPACK 1: w holds the weights laid out once as the B panels of that product, PANEL channels a panel,
 *   w[p][k][c] = W[p*PANEL + c][k] (zeros past the last channel; k over C*KH*KW), and the call takes that
 *   product, with a residual too (pliant.transforms.pack_weights), unless too few channels would fill its
 *   panels: then it unpacks them for the other paths; one group, or -2.
 *   S_WPACK 2: w holds a 3x3 convolution's weights as Winograd F(2x2, 3x3) transforms them (see "Winograd"), and
 *   the call runs that algorithm; one group, stride 1, no dilation, or -2.  S_WPACK 3: the same from the taps,
 *   w[m][3 kh + kw][c], transformed as the call runs.
 *   S_SMALL k: a convolution of one group with a window (not 1x1) of width stride 1 or 2, no dilation and at most
 *   k products per output (C*KH*KW) runs directly, 16 output positions by 16 channels (see "few input
 *   channels"; AVX-512); 0: never.
 *   S_WINO4 (S_WPACK 3, AVX-512): -1: Winograd F(4x4, 3x3) where plan_wino's estimate says so (see "F(4x4, 3x3)"),
 *   1: always, 0: never (F(2x2, 3x3)).
 * The caller checks every size against the arrays before calling.
 * Scratch buffers are kept per thread for the next call (libgomp reuses its threads).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
/* the vector path: the widest the compiler targets (-march=native), or plain C (also with
 * -DPLIANT_CONV_SCALAR, which the tests use to build it on any machine) */
#if defined(PLIANT_CONV_SCALAR)
#define ISA_SCALAR 1
#elif defined(__AVX512F__)
#define ISA_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#define ISA_AVX2 1
#elif defined(__GNUC__)
#define ISA_GCC_VECTORS 1
#else
#define ISA_SCALAR 1
#endif
#if defined(ISA_AVX512) || defined(ISA_AVX2)
#include <immintrin.h>
#endif

enum {
    S_N, S_C, S_H, S_W, S_M, S_KH, S_KW, S_OH, S_OW, S_SH, S_SW, S_DH, S_DW, S_PT, S_PL,
    S_GROUP, S_ACT, S_BLOCK, S_KBLOCK, S_PARALLEL, S_DIRECT, S_BT, S_ZROW, S_SWAP, S_WPACK, S_SMALL, S_WINO4,
    S_COUNT
};

/* --- vectors: AVX-512, AVX2 + FMA, GCC vectors, or plain C -----------------------------------------
 * MR x NR is the microkernel's tile: MR rows of the weights broadcast against NV vectors of VL floats of
 * one patch row; MR*NV accumulators stay in registers (16 of 32 zmm, 12 of 16 ymm, 16 NEON q). */
#if defined(ISA_AVX512)
#define VL 16
#define MR 8
#define NV 2
typedef __m512 vf;
static inline vf v_zero(void) { return _mm512_setzero_ps(); }
static inline vf v_set1(float x) { return _mm512_set1_ps(x); }
static inline vf v_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void v_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf v_max(vf a, vf b) { return _mm512_max_ps(a, b); } /* a > b ? a : b: b where either is NaN */
static inline vf v_min(vf a, vf b) { return _mm512_min_ps(a, b); } /* a < b ? a : b */
static inline vf v_leaky(vf v, vf alpha) {
    return _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v, alpha);
}
static inline __mmask16 first_lanes(int n) { return (__mmask16)((1u << n) - 1u); }
static inline vf v_masked_load(const float *p, int n) { return _mm512_maskz_loadu_ps(first_lanes(n), p); }
static inline void v_masked_store(float *p, vf v, int n) { _mm512_mask_storeu_ps(p, first_lanes(n), v); }
#elif defined(ISA_AVX2)
#define VL 8
#define MR 6
#define NV 2
typedef __m256 vf;
static const int32_t lane_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline vf v_zero(void) { return _mm256_setzero_ps(); }
static inline vf v_set1(float x) { return _mm256_set1_ps(x); }
static inline vf v_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void v_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf v_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf v_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf v_leaky(vf v, vf alpha) {
    return _mm256_blendv_ps(v, _mm256_mul_ps(v, alpha), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
}
static inline __m256i first_lanes(int n) { return _mm256_loadu_si256((const __m256i *)(lane_table + 8 - n)); }
static inline vf v_masked_load(const float *p, int n) { return _mm256_maskload_ps(p, first_lanes(n)); }
static inline void v_masked_store(float *p, vf v, int n) { _mm256_maskstore_ps(p, first_lanes(n), v); }
#elif defined(ISA_GCC_VECTORS)
/* GCC/Clang vector extensions: 4 lanes (NEON, SSE, or scalar code where the target has neither) */
#define VL 4
#define MR 4
#define NV 4
typedef float vf __attribute__((vector_size(16)));
typedef int32_t vi __attribute__((vector_size(16)));
static inline vf v_zero(void) { return (vf){0.0f, 0.0f, 0.0f, 0.0f}; }
static inline vf v_set1(float x) { return (vf){x, x, x, x}; }
static inline vf v_load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void v_store(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf v_fma(vf a, vf b, vf c) { return a * b + c; }
static inline vf v_add(vf a, vf b) { return a + b; }
static inline vf v_sub(vf a, vf b) { return a - b; }
static inline vf v_pick(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); } /* m ? a : b */
static inline vf v_max(vf a, vf b) { return v_pick(a > b, a, b); }
static inline vf v_min(vf a, vf b) { return v_pick(a < b, a, b); }
static inline vf v_leaky(vf v, vf alpha) { return v_pick(v < v_zero(), alpha * v, v); }
static inline vf v_load_n(const float *p, int n) {
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int i = 0; i < n; i++) t[i] = p[i];
    return v_load(t);
}
static inline void v_store_n(float *p, vf v, int n) {
    float t[4];
    v_store(t, v);
    for (int i = 0; i < n; i++) p[i] = t[i];
}
#else
#define VL 1
#define MR 4
#define NV 16
typedef float vf;
static inline vf v_zero(void) { return 0.0f; }
static inline vf v_set1(float x) { return x; }
static inline vf v_load(const float *p) { return *p; }
static inline void v_store(float *p, vf v) { *p = v; }
static inline vf v_fma(vf a, vf b, vf c) { return a * b + c; }
static inline vf v_add(vf a, vf b) { return a + b; }
static inline vf v_sub(vf a, vf b) { return a - b; }
static inline vf v_max(vf a, vf b) { return a > b ? a : b; }
static inline vf v_min(vf a, vf b) { return a < b ? a : b; }
static inline vf v_leaky(vf v, vf alpha) { return v < 0.0f ? alpha * v : v; }
static inline vf v_load_n(const float *p, int n) { return n > 0 ? *p : 0.0f; }
static inline void v_store_n(float *p, vf v, int n) { if (n > 0) *p = v; }
#endif
#if defined(ISA_AVX512) || defined(ISA_AVX2)
/* The first n lanes at p.  A masked access whose masked-off lanes reach a page that is not present (never
 * touched, or not mapped) takes the microcoded fault suppression: 300-400 ns a load, 140 a store, against
 * 1-2 (measured on this AMD EPYC); lanes past n on another page than lane n-1's go through a copy. */
static inline int other_page(const float *p, int n) {
    return (((uintptr_t)(p + n - 1)) ^ ((uintptr_t)(p + VL - 1))) >= 4096;
}
static inline vf v_load_n(const float *p, int n) {
    if (n <= 0) return v_zero();
    if (!other_page(p, n)) return v_masked_load(p, n);
    float t[VL] = {0};
    memcpy(t, p, (size_t)n * sizeof(float));
    return v_load(t);
}
static inline void v_store_n(float *p, vf v, int n) {
    if (n <= 0) return;
    if (!other_page(p, n)) {
        v_masked_store(p, v, n);
        return;
    }
    float t[VL];
    v_store(t, v);
    memcpy(p, t, (size_t)n * sizeof(float));
}
#endif
#define NR (VL * NV)
#define PANEL 32 /* columns of a panel of B given packed (S_BT 2): a multiple of NR on every path */
_Static_assert(PANEL % NR == 0, "a tile of NR columns lies in one packed panel");
#define CHUNK 16 /* lanes per gather step (one zmm); NR is a multiple of it */

/* --- scratch ---------------------------------------------------------------------------------------- */

typedef struct {
    void *p;
    int64_t cap;
} buffer;

static __thread buffer tl_panels, tl_table, tl_split, tl_window, tl_bias, tl_weights;

static void *grow(buffer *b, int64_t bytes) {
    if (bytes > b->cap) {
        free(b->p);
        b->p = aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64));
        b->cap = b->p ? bytes : 0;
    }
    return b->p;
}

/* --- the microkernel -------------------------------------------------------------------------------- */

typedef struct {
    const float *bias; /* the tile's first row's bias, or NULL */
    int64_t act;
    float lo, hi, alpha;
} epilogue;

static inline vf activate(vf v, const epilogue *e) {
    switch (e->act) {
    case 1: return v_max(v_zero(), v); /* NaN stays NaN, as np.maximum (v < 0 ? 0 : v) */
    case 2: return v_min(v_set1(e->hi), v_max(v_set1(e->lo), v)); /* NaN stays NaN, as v < lo ? lo : v */
    case 3: return v_leaky(v, v_set1(e->alpha));
    default: return v;
    }
}

static inline vf finish(vf v, const epilogue *e, int r, const float *zr, int n) {
    if (zr) v = v_add(v, n == VL ? v_load(zr) : v_load_n(zr, n));
    if (e->bias) v = v_add(v, v_set1(e->bias[r]));
    return activate(v, e);
}

/* y = act(y + z) for len floats of each of `channels` rows (stride floats apart), in whole vectors */
static void add_residual(float *y, const float *z, int64_t channels, int64_t stride, int64_t len, const epilogue *e) {
    for (int64_t m = 0; m < channels; m++) {
        float *yr = y + m * stride;
        const float *zr = z + m * stride;
        int64_t q = 0;
        for (; q + VL <= len; q += VL) v_store(yr + q, activate(v_add(v_load(yr + q), v_load(zr + q)), e));
        if (q < len) {
            const int rest = (int)(len - q);
            v_store_n(yr + q, activate(v_add(v_load_n(yr + q, rest), v_load_n(zr + q, rest)), e), rest);
        }
    }
}

#if defined(__GNUC__) && !defined(ISA_SCALAR)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static /* NOTE: six copies of 64 scalar accumulators took GCC 15 s to compile */
#endif

/* A tile: MR rows of C (ldc apart) by NV vectors of VL columns, vector v at c[v] (with the residual at
 * z[v]) and nl[v] of its lanes inside the output.
 * c = (accumulate ? c : 0) + a (mr rows, lda apart, kc columns) * B, then the epilogue e if any.
 * B's row k, vector v: at b[0] + k*NR + v*VL (panel 1: a gathered panel; panel 2: b[0] + k*PANEL + v*VL, in B
 * given packed) or at b[v] + kofs[k] (read in place
 * from the input; exact: no lane at or past nl[v] is read).  nv (NV or NV/2) vectors are computed.
 * The weights are read in place, not packed: broadcasts from 8 row streams ran as fast as from a packed
 * panel (115-117 GFLOP/s either way at K = 576 and 2304), and packing cost up to 15% of a call (256 x 2304
 * weights for 100 columns). */
INLINE void micro_nv(int nv, int panel, int exact, int64_t kc, const float *restrict a, int64_t lda,
                     const float *const *b, const int64_t *restrict kofs, float *const *c, const float *const *z,
                     int64_t zld, int64_t ldc, int mr, const int *nl, int accumulate, const epilogue *e) {
    vf acc[MR][NV];
    const float *ar[MR];
    for (int r = 0; r < MR; r++) ar[r] = a + (r < mr ? r : 0) * lda; /* rows past mr: computed, not stored */
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < nv; v++) acc[r][v] = v_zero();
    for (int64_t k = 0; k < kc; k++) {
        vf bv[NV];
        for (int v = 0; v < nv; v++) {
            const float *bk = panel ? b[0] + k * (panel == 2 ? PANEL : NR) + v * VL : b[v] + kofs[k];
            bv[v] = exact ? v_load_n(bk, nl[v]) : v_load(bk);
        }
        for (int r = 0; r < MR; r++) {
            const vf x = v_set1(ar[r][k]);
            for (int v = 0; v < nv; v++) acc[r][v] = v_fma(x, bv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        for (int v = 0; v < nv; v++) {
            const int n = nl[v];
            if (n <= 0) continue;
            float *cr = c[v] + r * ldc;
            const float *zr = z ? z[v] + r * zld : NULL;
            vf x = acc[r][v];
            if (n == VL) {
                if (accumulate) x = v_add(x, v_load(cr));
                if (e) x = finish(x, e, r, zr, n);
                v_store(cr, x);
            } else {
                if (accumulate) x = v_add(x, v_load_n(cr, n));
                if (e) x = finish(x, e, r, zr, n);
                v_store_n(cr, x, n);
            }
        }
    }
}

/* a tile whose last half of vectors has no lane inside the output computes only the first half: 400
 * columns in panels of 32 left 16 of the last one's to compute for nothing */
static void tile(int panel, int exact, int64_t kc, const float *restrict a, int64_t lda, const float *const *b,
                 const int64_t *restrict kofs, float *const *c, const float *const *z, int64_t zld, int64_t ldc, int mr,
                 const int *nl, int accumulate, const epilogue *e) {
    const int half = nl[NV / 2] <= 0;
    if (panel == 2 && half)
        micro_nv(NV / 2, 2, 0, kc, a, lda, b, kofs, c, z, zld, ldc, mr, nl, accumulate, e);
    else if (panel == 2)
        micro_nv(NV, 2, 0, kc, a, lda, b, kofs, c, z, zld, ldc, mr, nl, accumulate, e);
    else if (panel && half)
        micro_nv(NV / 2, 1, 0, kc, a, lda, b, kofs, c, z, zld, ldc, mr, nl, accumulate, e);
    else if (panel)
        micro_nv(NV, 1, 0, kc, a, lda, b, kofs, c, z, zld, ldc, mr, nl, accumulate, e);
    else if (exact && half)
        micro_nv(NV / 2, 0, 1, kc, a, lda, b, kofs, c, z, zld, ldc, mr, nl, accumulate, e);
    else if (exact)
        micro_nv(NV, 0, 1, kc, a, lda, b, kofs, c, z, zld, ldc, mr, nl, accumulate, e);
    else if (half)
        micro_nv(NV / 2, 0, 0, kc, a, lda, b, kofs, c, z, zld, ldc, mr, nl, accumulate, e);
    else
        micro_nv(NV, 0, 0, kc, a, lda, b, kofs, c, z, zld, ldc, mr, nl, accumulate, e);
}

/* --- the patch gather ---------------------------------------------------------------------------------
 * A task's columns (output positions j0..j1 of one image) are cut into CHUNK-lane steps and each step into
 * segments, the runs of one output row.  For each segment and window position r = kh*KW + kw the lanes
 * whose input lies inside the image are one interval [lo, hi): the table holds it (and its mask) so that
 * the gather of a patch row, for every channel, is one masked load per segment. */

typedef struct {
    int64_t base; /* source offset of lane 0 (the segment extended leftwards), before channel and window */
} segment;

typedef struct {
    uint16_t mask;
    uint8_t lo, hi;
} lanes;

typedef struct {
    int64_t H, W, OW, SH, PT, DH, KH, KW, sw, wp; /* sw: the width stride, wp: the positions per phase */
    const int64_t *owlo, *owhi;                  /* per kw: output columns [owlo, owhi) read inside the row */
} geometry;

/* the segments of columns [j0, j1) in chunks of CHUNK lanes, nchunks of them (those past j1 are empty);
 * returns the number of segments; first[q]..first[q+1] are chunk q's */
static int64_t segments(const geometry *g, int64_t j0, int64_t j1, int64_t nchunks, int32_t *first, segment *seg,
                        lanes *lan) {
    const int64_t khw = g->KH * g->KW;
    int64_t ns = 0;
    for (int64_t q = 0; q < nchunks; q++) {
        first[q] = (int32_t)ns;
        const int64_t cs = j0 + q * CHUNK, ce = cs + CHUNK < j1 ? cs + CHUNK : j1;
        int64_t j = cs, oh = cs / g->OW, ow = cs - oh * g->OW;
        while (j < ce) {
            const int64_t len = ce - j < g->OW - ow ? ce - j : g->OW - ow, l0 = j - cs;
            const int64_t ih0 = oh * g->SH - g->PT;
            seg[ns].base = ih0 * g->sw * g->wp + ow - l0;
            for (int64_t kh = 0; kh < g->KH; kh++) {
                const int64_t ih = ih0 + kh * g->DH;
                for (int64_t kw = 0; kw < g->KW; kw++) {
                    lanes *L = &lan[ns * khw + kh * g->KW + kw];
                    int64_t lo = l0, hi = l0;
                    if (ih >= 0 && ih < g->H) {
                        lo = l0 + (g->owlo[kw] > ow ? g->owlo[kw] - ow : 0);
                        hi = l0 + (g->owhi[kw] - ow < len ? g->owhi[kw] - ow : len);
                        if (hi < lo) hi = lo;
                    }
                    L->lo = (uint8_t)lo;
                    L->hi = (uint8_t)hi;
                    L->mask = (uint16_t)((1u << hi) - (1u << lo));
                }
            }
            ns++;
            j += len;
            ow += len;
            if (ow == g->OW) {
                ow = 0;
                oh++;
            }
        }
    }
    first[nchunks] = (int32_t)ns;
    return ns;
}

/* patch rows [k0, k0+kc) of the task's columns into NR-column panels: panel p's row k at dst + (p*kc + k-k0)*NR.
 * src: the input of the task's group, channels cstride apart (phases split), less origin (the offset of the
 * first row src holds).  One chunk at a time down all kc rows, so the stores run through each panel in
 * order: k outermost wrote one row of every panel per step, kc*NR*4 bytes apart, which for kc = 144 fell in
 * two L1 sets (the gather took 40% of a 16-channel 3x3 convolution, 27% this way). */
static void gather(const geometry *g, const float *src, int64_t cstride, int64_t origin, const int64_t *koff,
                   int64_t k0, int64_t kc, int64_t nchunks, const int32_t *first, const segment *seg, const lanes *lan,
                   int64_t *kofs, int32_t *kr, float *dst) {
    const int64_t khw = g->KH * g->KW;
    for (int64_t k = 0, c = k0 / khw, r = k0 % khw; k < kc; k++) {
        kofs[k] = c * cstride + koff[r] - origin;
        kr[k] = (int32_t)r;
        if (++r == khw) {
            r = 0;
            c++;
        }
    }
    for (int64_t q = 0; q < nchunks; q++) {
        float *d = dst + (q / (NR / CHUNK)) * kc * NR + (q % (NR / CHUNK)) * CHUNK;
        const int32_t s0 = first[q], s1 = first[q + 1];
        if (s0 == s1) { /* past the last column */
            for (int64_t k = 0; k < kc; k++)
                for (int l = 0; l < CHUNK; l++) d[k * NR + l] = 0.0f;
            continue;
        }
#if defined(ISA_AVX512)
        /* NOTE: masked-off lanes are not read (no fault) and may lie outside the input: their addresses are
         * formed as integers, so that no out-of-range pointer is computed.  No load at all for a row outside
         * the image (mask 0): a masked load whose lanes all reach a page that is not present (the row above
         * an input that begins a mapping, or past the rows a task split) takes the microcoded fault
         * suppression, 300-400 ns (a version that loaded such rows ran a stride-2 convolution at half speed) */
        if (s1 - s0 == 1) { /* one output row: one masked load per patch row (1.87 -> 1.67 ns a chunk) */
            const lanes *L = lan + s0 * khw;
            const uintptr_t base = (uintptr_t)src + (uintptr_t)seg[s0].base * 4;
            for (int64_t k = 0; k < kc; k++) {
                const __mmask16 m = L[kr[k]].mask;
                _mm512_storeu_ps(d + k * NR, m ? _mm512_maskz_loadu_ps(m, (const void *)(base + (uintptr_t)kofs[k] * 4))
                                               : _mm512_setzero_ps());
            }
            continue;
        }
        for (int64_t k = 0; k < kc; k++) {
            __m512 v = _mm512_setzero_ps();
            for (int32_t i = s0; i < s1; i++) {
                const __mmask16 m = lan[i * khw + kr[k]].mask;
                if (m) v = _mm512_mask_loadu_ps(v, m, (const void *)((uintptr_t)src + (uintptr_t)(seg[i].base + kofs[k]) * 4));
            }
            _mm512_storeu_ps(d + k * NR, v);
        }
#else
        for (int64_t k = 0; k < kc; k++) {
            float *dk = d + k * NR;
            for (int l = 0; l < CHUNK; l++) dk[l] = 0.0f;
            for (int32_t i = s0; i < s1; i++) {
                const lanes L = lan[i * khw + kr[k]];
                if (L.hi <= L.lo) continue;
                const float *s = src + (seg[i].base + kofs[k] + L.lo);
                for (int l = L.lo; l < L.hi; l++) dk[l] = s[l - L.lo];
            }
        }
#endif
    }
}

/* --- one call: tasks of output columns ---------------------------------------------------------------
 * Three ways to feed B, chosen per call:
 *   GATHER: the patches gathered into panels (above), for any geometry;
 *   DIRECT: (width stride 1) B read in place from a zero-padded copy of the task's input rows, where every
 *           window row of an output row is one contiguous run; tasks are whole output rows, a tile's vectors
 *           each within one (so an output row of OW columns costs OW rounded up to a multiple of VL);
 *   FLAT:   an unpadded stride-1 1x1 convolution, whose B is the input itself. */
enum { GATHER, DIRECT, FLAT };

typedef struct {
    const float *x, *w, *b, *z, *params;
    float *y;
    int64_t C, H, W, M, OH, OW, SH, SW, PT, PL, DH, DW, KH, KW, G, act, cg, mg, K, ohw, npm;
    int mode, pack, bt, zrow; /* pack (FLAT): each tile's columns of B copied into a panel first; bt: from B^T;
                                 zrow: z is one row for every channel */
    int64_t kcb, nkb, nc, nblk, mblk, ppb, ntasks; /* task: (image, group, column block, channel block) */
    int64_t wp, npan, nchunks, maxseg, rows_in; /* GATHER: panels and segments per task, input rows split */
    int64_t rows, wq, src_rows;                 /* DIRECT: output rows per task, padded row width,
                                                   padded input rows per task */
    const int64_t *koff;
    geometry geo;
} job;

typedef struct {
    float *panels, *split;
    char *table;
} scratch;

static int thread_scratch(const job *j, scratch *s) {
    const int64_t khw = j->KH * j->KW;
    s->panels = s->split = NULL;
    s->table = NULL;
    if (j->mode == GATHER) {
        s->panels = grow(&tl_panels, j->kcb * j->nc * (int64_t)sizeof(float));
        s->table = grow(&tl_table, j->kcb * 12 + (j->nchunks + 1) * 4 +
                                       j->maxseg * ((int64_t)sizeof(segment) + khw * (int64_t)sizeof(lanes)));
        s->split = j->SW > 1 ? grow(&tl_split, j->cg * j->rows_in * j->SW * j->wp * (int64_t)sizeof(float)) : NULL;
        return s->panels && s->table && (s->split || j->SW == 1) ? 0 : -1;
    }
    s->table = grow(&tl_table, (j->K > 0 ? j->K : 1) * (int64_t)sizeof(int64_t));
    if (j->mode == FLAT) {
        if (!j->pack) return s->table ? 0 : -1;
        s->panels = grow(&tl_panels, j->kcb * NR * (int64_t)sizeof(float));
        return s->table && s->panels ? 0 : -1;
    }
    /* the padded rows and NR floats of slack for the lanes past an output row's end */
    s->split = grow(&tl_split, (j->cg * j->src_rows * j->wq + NR) * (int64_t)sizeof(float));
    return s->table && s->split ? 0 : -1;
}

/* an input row of w floats as sw phases of wp: d[p*wp + u] = xr[u*sw + p], zero past the row's end */
static void split_row(const float *restrict xr, float *restrict d, int64_t w, int64_t sw, int64_t wp) {
#if defined(ISA_AVX512)
    if (sw == 2) { /* NOTE: the scalar loop below took 17% of a 16-channel 160x160 stride-2 convolution */
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        for (int64_t u = 0; u < wp; u += 16) {
            const int64_t left = w - 2 * u; /* > 0: u < wp = ceil(w / 2) */
            const __m512 lo = left >= 16 ? _mm512_loadu_ps(xr + 2 * u) : v_load_n(xr + 2 * u, (int)left);
            const __m512 hi = left >= 32 ? _mm512_loadu_ps(xr + 2 * u + 16) : v_load_n(xr + 2 * u + 16, (int)left - 16);
            const int n = wp - u < 16 ? (int)(wp - u) : 16;
            v_store_n(d + u, _mm512_permutex2var_ps(lo, even, hi), n);
            v_store_n(d + wp + u, _mm512_permutex2var_ps(lo, odd, hi), n);
        }
        return;
    }
#endif
    for (int64_t ph = 0; ph < sw; ph++, d += wp) {
        const int64_t n = ph < w ? (w - ph + sw - 1) / sw : 0;
        int64_t u = 0;
        for (; u < n; u++) d[u] = xr[u * sw + ph];
        for (; u < wp; u++) d[u] = 0.0f;
    }
}

/* an input row with pl zeros in front and zeros after, wq floats in all */
static void pad_row(const float *restrict xr, float *restrict d, int64_t w, int64_t pl, int64_t wq) {
#if defined(ISA_AVX512)
    /* NOTE: a masked load and store per 16 floats: three libc calls a row took 2% of YOLO at 160 px (rows of 11) */
    for (int64_t q = 0; q < wq; q += 16) {
        const int64_t at = q - pl, lo = at < 0 ? -at : 0, hi = w - at < 16 ? w - at : 16;
        const __mmask16 m = hi <= lo ? 0 : (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
        const float *src = (const float *)((uintptr_t)xr + (uintptr_t)(at * (int64_t)sizeof(float)));
        const __m512 v = _mm512_maskz_loadu_ps(m, src);
        if (wq - q >= 16)
            _mm512_storeu_ps(d + q, v);
        else
            _mm512_mask_storeu_ps(d + q, first_lanes((int)(wq - q)), v);
    }
#else
    const int64_t front = pl < wq ? pl : wq, n = w < wq - front ? w : wq - front;
    memset(d, 0, (size_t)front * sizeof(float));
    memcpy(d + front, xr, (size_t)n * sizeof(float));
    memset(d + front + n, 0, (size_t)(wq - front - n) * sizeof(float));
#endif
}

/* the GEMM of one task over its K blocks: gathered panels, or B in place (kofs: every k's offset from the
 * tile's base) for the tiles of output rows [oh0, oh1) (DIRECT: base rstride apart per row, tiles within a
 * row) or of columns [j0, j1) (FLAT) */
static void run_task(const job *j, int64_t t, const scratch *sc) {
    const int64_t tb = t / j->mblk, mb = t - tb * j->mblk; /* channel block: weight panels [ip0, ip1) */
    const int64_t ng = tb / j->nblk, n = ng / j->G, g = ng - n * j->G, khw = j->KH * j->KW;
    const int64_t blk = tb - ng * j->nblk;
    const int64_t ip0 = mb * j->ppb, ip1 = ip0 + j->ppb < j->npm ? ip0 + j->ppb : j->npm;
    const float *xg = j->x + (n * j->C + g * j->cg) * j->H * j->W;
    float *yg = j->y + (n * j->M + g * j->mg) * j->ohw;
    const float *zg = j->z ? j->z + (j->zrow ? 0 : (n * j->M + g * j->mg) * j->ohw) : NULL;
    const float *wg = j->w + g * j->mg * j->K;

    int64_t j0 = 0, j1 = 0, oh0 = 0, oh1 = 0, rstride = 0;
    const float *src = xg;
    int64_t *kofs = (int64_t *)sc->table;
    segment *seg = NULL;
    lanes *lan = NULL;
    int32_t *kr = NULL, *first = NULL;
    int64_t cstride = j->H * j->W, origin = 0;
    if (j->mode == DIRECT) {
        oh0 = blk * j->rows, oh1 = oh0 + j->rows < j->OH ? oh0 + j->rows : j->OH;
        /* the zero-padded rows the task reads (a few more than its share where tasks meet) */
        const int64_t pr0 = oh0 * j->SH, pr1 = (oh1 - 1) * j->SH + (j->KH - 1) * j->DH + 1, nrow = pr1 - pr0;
        const int64_t wq = j->wq;
        float *s = sc->split;
        for (int64_t c = 0; c < j->cg; c++)
            for (int64_t pr = pr0; pr < pr1; pr++, s += wq) {
                const int64_t ih = pr - j->PT;
                if (ih < 0 || ih >= j->H)
                    memset(s, 0, (size_t)wq * sizeof(float));
                else
                    pad_row(xg + (c * j->H + ih) * j->W, s, j->W, j->PL, wq);
            }
        memset(s, 0, NR * sizeof(float)); /* read by lanes past the last output row's end, never stored */
        src = sc->split;
        rstride = j->SH * wq;
        for (int64_t kh = 0; kh < j->KH; kh++)
            for (int64_t kw = 0; kw < j->KW; kw++) kofs[kh * j->KW + kw] = kh * j->DH * wq + kw * j->DW;
        for (int64_t k = khw; k < j->K; k++) kofs[k] = kofs[k - khw] + nrow * wq; /* the next channel */
    } else {
        j0 = blk * j->nc, j1 = j0 + j->nc < j->ohw ? j0 + j->nc : j->ohw;
        if (j->mode == FLAT) {
            for (int64_t k = 0; k < j->K; k++) kofs[k] = k * j->ohw;
        } else {
            seg = (segment *)(kofs + j->kcb);
            lan = (lanes *)(seg + j->maxseg);
            kr = (int32_t *)(lan + j->maxseg * khw), first = kr + j->kcb;
            segments(&j->geo, j0, j1, j->nchunks, first, seg, lan);
            if (j->SW > 1) {
                /* split the input rows the task reads into the width stride's phases (a few rows more than
                 * its share where tasks meet; in the task, so that it is shared out and stays in cache) */
                const int64_t r0 = j0 / j->OW, r1 = (j1 - 1) / j->OW;
                int64_t ir0 = r0 * j->SH - j->PT, ir1 = r1 * j->SH - j->PT + (j->KH - 1) * j->DH + 1;
                ir0 = ir0 < 0 ? 0 : ir0 > j->H ? j->H : ir0;
                ir1 = ir1 < ir0 ? ir0 : ir1 > j->H ? j->H : ir1;
                const int64_t rows = ir1 - ir0, sw = j->SW, wp = j->wp;
                for (int64_t c = 0; c < j->cg; c++)
                    for (int64_t ih = ir0; ih < ir1; ih++)
                        split_row(xg + (c * j->H + ih) * j->W, sc->split + (c * rows + ih - ir0) * sw * wp, j->W, sw,
                                  wp);
                src = sc->split;
                cstride = rows * sw * wp;
                origin = ir0 * sw * wp;
            }
        }
    }

    const int64_t nchunk = (oh1 - oh0) * ((j->OW + VL - 1) / VL); /* DIRECT: rows as chunks of VL lanes */
    for (int64_t kb = 0; kb < j->nkb; kb++) {
        const int64_t k0 = kb * j->kcb, kc = j->K - k0 < j->kcb ? j->K - k0 : j->kcb;
        const int fused = kb == j->nkb - 1 && (j->b || j->z || j->act);
        if (j->mode == GATHER)
            gather(&j->geo, src, cstride, origin, j->koff, k0, kc, j->nchunks, first, seg, lan, kofs, kr, sc->panels);
        /* a tile's columns, then all the weights' rows against them in turn, while its B is in L1 (weights'
         * rows outermost, DIRECT ran at 84 GFLOP/s on 32->32 channels of 16x16, against 110 this way) */
        const int64_t ntiles = j->mode == DIRECT ? (nchunk + NV - 1) / NV : (j1 - j0 + NR - 1) / NR;
        for (int64_t tt = 0, r = 0, ow = 0; tt < ntiles; tt++) {
            const float *b[NV], *z[NV];
            float *c[NV];
            int64_t at[NV] = {0};
            int nl[NV], exact = 0;
            for (int v = 0; v < NV; v++) {
                if (j->mode == DIRECT) {
                    /* NV consecutive chunks of VL lanes, whichever output rows they are in (a row of 16 columns
                     * fills half a tile); chunk r, ow: output row oh0 + r, column ow */
                    if (tt * NV + v < nchunk) {
                        at[v] = (oh0 + r) * j->OW + ow;
                        b[v] = src + r * rstride + ow;
                        nl[v] = (int)(j->OW - ow < VL ? j->OW - ow : VL);
                        if ((ow += VL) >= j->OW) ow = 0, r++;
                    } else { /* past the end: a copy, not stored */
                        at[v] = at[0], b[v] = b[0], nl[v] = 0;
                    }
                } else {
                    const int64_t jj = j0 + tt * NR + v * VL;
                    at[v] = jj < j1 ? jj : j0 + tt * NR;
                    b[v] = j->mode == FLAT ? src + at[v] : sc->panels + tt * kc * NR;
                    nl[v] = jj < j1 ? (int)(j1 - jj < VL ? j1 - jj : VL) : 0;
                    exact |= j->mode == FLAT && nl[v] < VL; /* FLAT reads the input itself: not past its end */
                }
            }
            int panel = j->mode == GATHER;
            if (j->pack) {
                /* B's rows k0..k0+kc of the tile's NR columns, contiguous (zeros past the last column) */
                const int64_t c0 = j0 + tt * NR, w = j1 - c0 < NR ? j1 - c0 : NR;
                float *restrict d = sc->panels;
                if (j->bt == 2) { /* B in panels already: this tile's NR columns within one */
                    b[0] = src + c0 / PANEL * j->K * PANEL + k0 * PANEL + c0 % PANEL;
                } else if (j->bt) { /* B^T's rows c0.. (K floats each), columns k0..k0+kc: a transpose in cache */
                    const float *restrict sb = src + c0 * j->K + k0;
                    if (w < NR) memset(d, 0, (size_t)(kc * NR) * sizeof(float));
                    for (int64_t c = 0; c < w; c++, sb += j->K)
                        for (int64_t k = 0; k < kc; k++) d[k * NR + c] = sb[k];
                } else {
                    const float *restrict sb = src + k0 * j->ohw + c0;
                    for (int64_t k = 0; k < kc; k++, d += NR, sb += j->ohw) {
                        memcpy(d, sb, (size_t)w * sizeof(float));
                        if (w < NR) memset(d + w, 0, (size_t)(NR - w) * sizeof(float));
                    }
                }
                if (j->bt != 2) b[0] = sc->panels;
                panel = j->bt == 2 ? 2 : 1;
                exact = 0;
            }
            for (int64_t ip = ip0; ip < ip1; ip++) {
                const int mr = (int)(j->mg - ip * MR < MR ? j->mg - ip * MR : MR);
                const epilogue e = {j->b ? j->b + g * j->mg + ip * MR : NULL, j->act, j->params[0], j->params[1],
                                    j->params[2]};
                for (int v = 0; v < NV; v++) {
                    c[v] = yg + ip * MR * j->ohw + at[v];
                    z[v] = zg ? zg + (j->zrow ? 0 : ip * MR * j->ohw) + at[v] : NULL;
                }
                tile(panel, exact, kc, wg + ip * MR * j->K + k0, j->K, b, kofs + k0, c, zg ? z : NULL, j->zrow ? 0 : j->ohw,
                     j->ohw, mr, nl, kb > 0, fused ? &e : NULL);
            }
        }
    }
}

#ifdef _OPENMP
/* the largest share of the columns one of `threads` gets, relative to an even share, when `images` images'
 * blocks of nc columns (the last of each image shorter) are handed out in turn */
static double column_share(int64_t ohw, int64_t nc, int64_t images, int threads) {
    int64_t load[64] = {0}, most = 0;
    if (threads > 64) return 1.0;
    const int64_t nblk = (ohw + nc - 1) / nc, last = ohw - (nblk - 1) * nc;
    for (int64_t t = 0; t < images * nblk; t++) load[t % threads] += t % nblk == nblk - 1 ? last : nc;
    for (int i = 0; i < threads; i++) most = load[i] > most ? load[i] : most;
    return (double)most * threads / ((double)ohw * (double)images);
}
#endif

/* FLAT packs a tile's columns of B (kc rows of NR floats, ohw apart) into a contiguous panel before the
 * weights' rows meet it, where at least PACK_PANELS panels of weights (MR rows each) will.  Read in place,
 * rows a power-of-two-ish distance apart fall into a few L1 sets and evict each other: a 256-token BERT
 * layer's products (B 256 x 768, 512 x 256) ran 7-9% faster packed; with fewer weight rows the copy costs
 * more than it saves (early_exit_bert at 32 tokens, 4 panels: 6-10% faster unpacked) */
#ifndef PACK_PANELS
#define PACK_PANELS 6
#endif

#define SPIN_S 100e-6 /* the longest the calling thread spins for another to finish its last task */

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef int (*task_fn)(const void *, int64_t);

/* tasks 0..n[0]-1 of step[0], then (once all of those are done) 0..n[1]-1 of step[1], ... on `threads` threads, in
 * one parallel region (task(ctx, t) != 0: a scratch buffer could not be allocated) */
static int share_steps(int steps, const int64_t *n, const task_fn *step, int threads, const void *ctx) {
    if (threads <= 1) {
        for (int k = 0; k < steps; k++)
            for (int64_t t = 0; t < n[k]; t++)
                if (step[k](ctx, t)) return -1;
        return 0;
    }
#ifdef _OPENMP
    /* NOTE: no OpenMP barrier or worksharing loop: a waiting OpenMP thread sleeps in the kernel once its
     * spin (GOMP_SPINCOUNT, which pliant sets low) runs out, or at once with OMP_WAIT_POLICY=PASSIVE, and
     * its wake-up costs 30-50 us on this 2-vCPU guest (an empty parallel region: 30 us, against 0.7 us
     * spinning).  So tasks go to whoever asks next (a thread that wakes late takes fewer), and the calling
     * thread spins, not sleeps, while another thread is still on a task, so the region's closing barrier
     * usually finds everyone there.  It does not spin for a thread that has not started (with the other CPU
     * busy elsewhere it may not run for a scheduler tick: spinning then kept the call at 8 ms instead of
     * 80 us), nor longer than SPIN_S: it sleeps in the barrier, which frees its CPU for the late thread.
     * Between steps a thread waits (spinning) for the tasks others took, not for the others: one that
     * has not started holds nobody up. */
    int64_t next[4] = {0, 0, 0, 0}, finished[4] = {0, 0, 0, 0};
    int started = 0, done = 0, failed = 0;
    if (steps > 4) return -1;
#pragma omp parallel num_threads(threads)
    {
        const int me = omp_get_thread_num();
        __atomic_fetch_add(&started, 1, __ATOMIC_RELAXED);
        for (int k = 0; k < steps && !__atomic_load_n(&failed, __ATOMIC_RELAXED); k++) {
            if (k > 0)
                while (__atomic_load_n(&finished[k - 1], __ATOMIC_ACQUIRE) < n[k - 1] &&
                       !__atomic_load_n(&failed, __ATOMIC_RELAXED))
                    relax();
            for (;;) {
                const int64_t t = __atomic_fetch_add(&next[k], 1, __ATOMIC_RELAXED);
                if (t >= n[k]) break;
                if (step[k](ctx, t)) {
                    __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
                    break;
                }
                __atomic_fetch_add(&finished[k], 1, __ATOMIC_RELEASE);
            }
        }
        __atomic_fetch_add(&done, 1, __ATOMIC_RELEASE);
        if (me == 0) {
            const double until = omp_get_wtime() + SPIN_S;
            for (int i = 1; __atomic_load_n(&done, __ATOMIC_ACQUIRE) < __atomic_load_n(&started, __ATOMIC_RELAXED); i++) {
                relax();
                if (i % 64 == 0 && omp_get_wtime() > until) break;
            }
        }
    }
    return failed ? -1 : 0;
#else
    return 0;
#endif
}

/* tasks 0..ntasks-1 on `threads` threads (see share_steps) */
static int share_out(int64_t ntasks, int threads, task_fn task, const void *ctx) {
    return share_steps(1, &ntasks, &task, threads, ctx);
}

static int conv_task(const void *ctx, int64_t t) {
    const job *j = (const job *)ctx;
    scratch sc;
    if (thread_scratch(j, &sc)) return -1;
    run_task(j, t, &sc);
    return 0;
}

/* --- weights as B: many output positions, few channels ------------------------------------------------
 * With far more output positions than channels, the product is turned around: Y^T (positions x M) =
 * P^T (positions x K) W^T (K x M).  MR output positions are the tile's rows, their patches read in place
 * (a broadcast per position and k, at the position's window origin plus k's offset: no gather), and the
 * weights are the B panels, PANEL channels wide: given so (S_WPACK, laid out once by pliant.PackedConv) or
 * packed once per call (M*K copies against M*K*positions multiply-adds).  The tile, MR positions by NR channels, is stored transposed into the NCHW result through
 * a small buffer, with the epilogue.  Where the windows may leave the image, each task reads a zero-padded
 * copy of the input rows it needs. */
/* Where it is taken (measured at 2 threads against the other paths, 12 alternating rounds): 64 -> 64
 * channels at stride 2 on 249x39 (conformer) 0.79x the time, 16 -> 32 at stride 2 on 160x160 0.91x; from
 * 32 channels on 80x80 to 128 on 20x20 within 2% either way; 64 -> 128 at stride 2 on 48x48 1.10x (packing
 * 128 x 576 weights at every call), so not past SWAP_MAX_M channels; SkipNet's 32 -> 32 channels on 64x64
 * at stride 1, 1.03x: only width strides of 2 or more, where the gather splits rows into phases.  Where no
 * window leaves the image there is no padded copy to make and fewer positions pay: conformer's 64 -> 64 at
 * stride 2 on 99x39 (931 positions, rows of 19) 0.79x, 32 -> 32 0.70x, 64 channels of 10x10 0.92x. */
#define SWAP_MIN_K 128          /* below, the transposed stores of a tile cost more than its product saves */
#define SWAP_MAX_M 64           /* output channels: the weights packed at every call */
#define SWAP_MIN_POSITIONS 1024 /* output positions per image, where windows leave the image (a padded copy) */
#define SWAP_MIN_UNPADDED 64    /* ... where they do not (the input read in place) */
#ifndef SWAP_FEW_TILES
#define SWAP_FEW_TILES 8 /* fewer tiles of MR positions than this per thread: the tasks split the panels too */
#endif
/* USE_PANELS: weights given as panels (S_WPACK) take the turned-around product where the output channels fill
 * at least 3/4 of the panels' lanes.  16 channels in a 32-lane panel (AVX-512) ran at half the speed of the
 * other paths (ResNet blocks of 16 channels at 32x32 and 64x64, 1.6x and 1.9x the time); they are unpacked
 * instead (16 x 144 floats a call).  From 32 channels the product ran within 0.94-1.11x of the others. */

typedef struct {
    const float *x, *wp, *b, *z, *bias_pad, *params; /* bias_pad: b with zeros to a whole number of panels */
    float *y;
    int64_t C, H, W, M, OH, OW, SH, SW, PT, PL, DH, DW, KH, KW, act, K, ohw, npan;
    int64_t tiles, tasks_per_image, wq; /* tiles of MR positions per image, shared evenly; padded row width */
    int padded;                             /* windows may leave the image: read a padded copy */
    int64_t tgroups, pgroups, serial; /* few positions: tasks of runs of tiles by runs of panels; the call's number */
} swap_job;

/* mr (at most MR) positions (patches at xr[r] + kofs[k]) by the NR channels at bp (row k at bp + k*PANEL), then
 * the bias of those channels (e->bias: the first one's, or NULL) and the activation, in registers */
INLINE void swap_micro_mr(int mr, int64_t K, const float *const *xr, const int64_t *restrict kofs,
                          const float *restrict bp, float *restrict tile_buf, const epilogue *e) {
    vf acc[MR][NV];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = v_zero();
    for (int64_t k = 0; k < K; k++) {
        const int64_t o = kofs[k];
        vf bv[NV];
        for (int v = 0; v < NV; v++) bv[v] = v_load(bp + k * PANEL + v * VL);
        for (int r = 0; r < mr; r++) {
            const vf xv = v_set1(xr[r][o]);
            for (int v = 0; v < NV; v++) acc[r][v] = v_fma(xv, bv[v], acc[r][v]);
        }
    }
    vf bias[NV];
    for (int v = 0; v < NV; v++) bias[v] = e->bias ? v_load(e->bias + v * VL) : v_zero();
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < NV; v++) v_store(tile_buf + r * NR + v * VL, activate(v_add(acc[r][v], bias[v]), e));
}

/* the tile of mr positions with a kernel of exactly that many rows: the last tile of 25 positions (a 5x5 output)
 * has one, for which MR rows took 8x its work (YOLO's 128 -> 256 channels at stride 2 on 10x10: 0.8x the time) */
static void swap_micro(int mr, int64_t K, const float *const *xr, const int64_t *restrict kofs,
                       const float *restrict bp, float *restrict tile_buf, const epilogue *e) {
    switch (mr) { /* NOTE: MR is 4 to 8 */
#if MR >= 8
    case 8: swap_micro_mr(8, K, xr, kofs, bp, tile_buf, e); break;
    case 7: swap_micro_mr(7, K, xr, kofs, bp, tile_buf, e); break;
#endif
#if MR >= 6
    case 6: swap_micro_mr(6, K, xr, kofs, bp, tile_buf, e); break;
    case 5: swap_micro_mr(5, K, xr, kofs, bp, tile_buf, e); break;
#endif
    case 4: swap_micro_mr(4, K, xr, kofs, bp, tile_buf, e); break;
    case 3: swap_micro_mr(3, K, xr, kofs, bp, tile_buf, e); break;
    case 2: swap_micro_mr(2, K, xr, kofs, bp, tile_buf, e); break;
    default: swap_micro_mr(1, K, xr, kofs, bp, tile_buf, e); break;
    }
}

/* where the windows start: k's offset from a window's origin, rows rstride and channels cstride apart */
static void swap_offsets(const swap_job *j, int64_t rstride, int64_t cstride, int64_t *kofs) {
    const int64_t khw = j->KH * j->KW;
    for (int64_t kh = 0; kh < j->KH; kh++)
        for (int64_t kw = 0; kw < j->KW; kw++) kofs[kh * j->KW + kw] = kh * j->DH * rstride + kw * j->DW;
    for (int64_t k = khw; k < j->K; k++) kofs[k] = kofs[k - khw] + cstride;
}

/* a number for each call, never 0 or repeated: work a thread keeps for its next task of the same call is marked with
 * it (the turned-around product's padded rows on few positions, Winograd's input transform of a small image) */
static int64_t calls;
static inline int64_t next_call(void) { return __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED); }

/* few positions: the padded rows a thread made last (its call's number and run of tiles), kept for its next task */
static __thread buffer tl_few;
static __thread int64_t tl_few_serial = -1, tl_few_run = -1;

static int swap_task(const void *ctx, int64_t t) {
    const swap_job *j = (const swap_job *)ctx;
    int64_t n, j0, e, pn0 = 0, pn1 = j->npan;
    if (j->tgroups) { /* few positions: image n's run tg of tiles by run pg of panels */
        const int64_t pg = t % j->pgroups, tg = t / j->pgroups % j->tgroups;
        n = t / (j->pgroups * j->tgroups);
        j0 = tg * j->tiles / j->tgroups * MR, e = (tg + 1) * j->tiles / j->tgroups * MR;
        pn0 = pg * j->npan / j->pgroups, pn1 = (pg + 1) * j->npan / j->pgroups;
    } else {
        const int64_t q = t % j->tasks_per_image;
        n = t / j->tasks_per_image;
        j0 = q * j->tiles / j->tasks_per_image * MR, e = (q + 1) * j->tiles / j->tasks_per_image * MR;
    }
    const int64_t j1 = e < j->ohw ? e : j->ohw;
    const float *xn = j->x + n * j->C * j->H * j->W;
    int64_t *kofs = grow(&tl_table, j->K * (int64_t)sizeof(int64_t));
    if (!kofs) return -1;
    /* where position (oh, ow)'s window starts, and k's offset from there */
    const float *src = xn;
    int64_t rstride = j->W, cstride = j->H * j->W, oh0 = j0 / j->OW, shift = 0;
    if (j->padded) {
        const int64_t oh1 = (j1 - 1) / j->OW, rows = (oh1 - oh0) * j->SH + (j->KH - 1) * j->DH + 1;
        const int64_t wq = j->wq, run = j->tgroups ? j0 + n * j->ohw : -1;
        /* NOTE: few positions: tasks of one run of tiles (several runs of panels) share the padded rows, made once
         * per thread; else each task pads its own (tl_split) */
        const int keep = j->tgroups && tl_few_serial == j->serial && tl_few_run == run;
        float *d = grow(j->tgroups ? &tl_few : &tl_split, j->C * rows * wq * (int64_t)sizeof(float));
        if (!d) return -1;
        if (j->tgroups) tl_few_serial = j->serial, tl_few_run = run;
        if (!keep)
            for (int64_t c = 0; c < j->C; c++)
                for (int64_t r = 0; r < rows; r++) {
                    const int64_t ih = oh0 * j->SH - j->PT + r;
                    float *dr = d + (c * rows + r) * wq;
                    if (ih < 0 || ih >= j->H)
                        memset(dr, 0, (size_t)wq * sizeof(float));
                    else
                        pad_row(xn + (c * j->H + ih) * j->W, dr, j->W, j->PL, wq);
                }
        src = d, rstride = wq, cstride = rows * wq, shift = oh0 * j->SH;
    }
    swap_offsets(j, rstride, cstride, kofs);
    float tile_buf[MR * NR] __attribute__((aligned(64)));
    for (int64_t p0 = j0; p0 < j1; p0 += MR) {
        const float *xr[MR];
        const int nr = (int)(j1 - p0 < MR ? j1 - p0 : MR);
        for (int r = 0; r < MR; r++) {
            const int64_t q = p0 + (r < nr ? r : 0), oh = q / j->OW, ow = q - oh * j->OW;
            xr[r] = src + (oh * j->SH - shift) * rstride + ow * j->SW;
        }
        for (int64_t pn = pn0; pn < pn1; pn++) {
            const int64_t m0 = pn * NR, nc = j->M - m0 < NR ? j->M - m0 : NR;
            /* the bias as a vector of the panel's channels: from the padded copy where the panel is the last; with
             * a residual, the activation after it is added */
            const epilogue e = {j->b ? j->bias_pad + m0 : NULL, j->z ? 0 : j->act, j->params[0], j->params[1],
                                j->params[2]};
            swap_micro(nr, j->K, xr, kofs, j->wp + m0 / PANEL * j->K * PANEL + m0 % PANEL, tile_buf, &e);
            if (nr == MR) { /* NOTE: a fixed count: unrolled, without a compare per store */
                for (int64_t c = 0; c < nc; c++) {
                    float *yr = j->y + (n * j->M + m0 + c) * j->ohw + p0;
                    for (int r = 0; r < MR; r++) yr[r] = tile_buf[r * NR + c];
                }
            } else {
                for (int64_t c = 0; c < nc; c++) {
                    float *yr = j->y + (n * j->M + m0 + c) * j->ohw + p0;
                    for (int r = 0; r < nr; r++) yr[r] = tile_buf[r * NR + c];
                }
            }
        }
    }
    if (j->z) {
        /* the residual and the activation after it, over the task's positions of each channel while they are in
         * cache (added as each tile was stored transposed, one float at a time, SkipNet's 32 -> 32 channels on
         * 64x64 took 460 us against 400 without a residual) */
        const epilogue ea = {NULL, j->act, j->params[0], j->params[1], j->params[2]};
        const int64_t m0 = pn0 * NR, m1 = pn1 * NR < j->M ? pn1 * NR : j->M, at = (n * j->M + m0) * j->ohw + j0;
        add_residual(j->y + at, j->z + at, m1 - m0, j->ohw, j1 - j0, &ea);
    }
    return 0;
}

/* the swapped product where it pays (see above), or with weights given as its panels (S_WPACK); 1: not taken,
 * the caller goes on */
static int swap_conv(void **p, const int64_t *s, int threads) {
    swap_job j;
    memset(&j, 0, sizeof j);
    const int64_t N = s[S_N];
    j.x = p[0], j.b = p[2], j.z = p[3], j.y = p[4], j.params = p[5];
    j.C = s[S_C], j.H = s[S_H], j.W = s[S_W], j.M = s[S_M], j.OH = s[S_OH], j.OW = s[S_OW], j.SH = s[S_SH];
    j.SW = s[S_SW], j.PT = s[S_PT], j.PL = s[S_PL], j.DH = s[S_DH], j.DW = s[S_DW], j.KH = s[S_KH], j.KW = s[S_KW];
    j.act = s[S_ACT], j.K = j.C * j.KH * j.KW, j.ohw = j.OH * j.OW;
    j.padded = j.PT > 0 || j.PL > 0 || (j.OH - 1) * j.SH + (j.KH - 1) * j.DH - j.PT >= j.H ||
               (j.OW - 1) * j.SW + (j.KW - 1) * j.DW - j.PL >= j.W;
    const int given = s[S_WPACK] != 0;
    j.npan = (j.M + NR - 1) / NR;
    if (given) {
        if (s[S_GROUP] != 1 || s[S_BT] || s[S_ZROW]) return -2;
        if (s[S_SWAP] >= 0 && j.M * 4 < j.npan * NR * 3) return 1; /* see USE_PANELS; S_SWAP < 0: always (tests) */
    } else if (s[S_GROUP] != 1 || s[S_BT] || s[S_ZROW] || s[S_SWAP] == 0 ||
               (s[S_SWAP] > 0 && (p[3] || j.SW < 2 || j.K < SWAP_MIN_K || j.M > SWAP_MAX_M || j.ohw < s[S_SWAP] * j.M ||
                                  j.ohw < (j.padded ? SWAP_MIN_POSITIONS : SWAP_MIN_UNPADDED)))) {
        return 1;
    }
    const int64_t wide = (j.M + PANEL - 1) / PANEL; /* panels of PANEL channels, each a whole number of NR */
    if (given) {
        j.wp = p[1];
    } else {
        /* the weights, packed as S_WPACK has them: panel pn's row k is channels pn*PANEL.. of weight column k */
        float *wp = grow(&tl_panels, wide * j.K * PANEL * (int64_t)sizeof(float));
        if (!wp) return -1;
        const float *w = p[1];
        /* NOTE: in blocks of 16 rows of a panel, which stay in L1 while the weight rows are read into them (row
         * by row, the stores a panel row apart took 0.85 ns each) */
        for (int64_t pn = 0; pn < wide; pn++) {
            float *d = wp + pn * j.K * PANEL;
            for (int64_t k0 = 0; k0 < j.K; k0 += 16) {
                const int64_t k1 = k0 + 16 < j.K ? k0 + 16 : j.K;
                for (int64_t c = 0; c < PANEL; c++) {
                    const int64_t m = pn * PANEL + c;
                    const float *wr = w + m * j.K;
                    if (m < j.M)
                        for (int64_t k = k0; k < k1; k++) d[k * PANEL + c] = wr[k];
                    else
                        for (int64_t k = k0; k < k1; k++) d[k * PANEL + c] = 0.0f;
                }
            }
        }
        j.wp = wp;
    }
    if (j.b) {
        float *bp = grow(&tl_bias, j.npan * NR * (int64_t)sizeof(float));
        if (!bp) return -1;
        for (int64_t m = 0; m < j.npan * NR; m++) bp[m] = m < j.M ? j.b[m] : 0.0f;
        j.bias_pad = bp;
    }
    j.wq = (j.OW - 1) * j.SW + (j.KW - 1) * j.DW + 1;
    /* about 4 tasks per thread, each an even share of an image's tiles of MR positions (cut at a fixed size,
     * 64 -> 64 channels on 20x20 made 7 tasks of 7 tiles and one of 1; timed within 2% either way) */
    j.tiles = (j.ohw + MR - 1) / MR;
    const int64_t want = (4 * threads + N - 1) / N;
    if (threads > 1 && j.tiles < SWAP_FEW_TILES * threads) {
        /* few positions: the tasks split the panels too, so that the threads' shares are even (25 positions, 3 tiles
         * and 1 position, made 4 tasks, 2 tiles' time on 2 threads) */
        j.pgroups = j.npan < want ? j.npan : want;
        j.tgroups = (want + j.pgroups - 1) / j.pgroups;
        if (j.tgroups > j.tiles) j.tgroups = j.tiles;
        j.serial = next_call();
        return share_out(N * j.pgroups * j.tgroups, threads, swap_task, &j);
    }
    j.tasks_per_image = want < j.tiles ? want : j.tiles;
    return share_out(N * j.tasks_per_image, threads, swap_task, &j);
}

/* --- Winograd F(2x2, 3x3): weights given transformed (S_WPACK 2) or as taps (S_WPACK 3) ----------------
 * A 3x3 convolution of stride 1, no dilation and one group, over 2x2 tiles of the output:
 *     Y = A^T [ U . (B^T d B) ] A,   U = G g G^T (4x4, laid out once: pliant.transforms.pack_weights)
 * for each tile's 4x4 input d, summed over the input channels: 16 products per output pair of channels and
 * tile of 4 outputs, against 36 directly (2.25x fewer).  The sum over channels is 16 GEMMs, one per element
 * xi of the 4x4 transformed tile: Mx[xi] (M x tiles) = U[xi] (M x C) V[xi] (C x tiles), run by the
 * microkernel above (weights broadcast from U's rows in place, V's rows read in place).  Per block of tile
 * rows (the transformed input of the whole image, unless it outgrows WINO_BLOCK):
 *   1. V[xi][c][tile] = (B^T d B)[xi] for every channel (tasks: runs of channels), from each input row split
 *      into its even and odd columns (a tile's 4 columns are then two adjacent entries of each);
 *   2. per run of output channels (tasks): the 16 products, then A^T Mx A per tile, interleaved into output
 *      rows, with the residual, the bias and the activation.
 * w (S_WPACK 2): U as float[16][M][C], U[4i + j][m][c] = (G w[m][c] G^T)[i][j]
 * (pliant.ops.conv.pack_winograd_weights).  w (S_WPACK 3): the taps as float[M][9][C] (pack_winograd_taps), 9/16
 * of U's size; step 2 transforms MR rows of them into U (wino_weights) before those rows' 16 products: about
 * 3.7 vector operations per U vector against P (the tiles) multiply-adds, so small images pay most (YOLO at
 * 160 px: 1.07x the time of S_WPACK 2; 0.95-1.03x at larger sizes).  Rounding: within 2x a direct product's in
 * the tests (B^T and A^T are 0 and +-1; G's halves are exact).  From the taps on AVX-512, larger images run as
 * F(4x4, 3x3) instead (see there), where plan_wino's estimate of both calls says so. */
#define WT 16                /* elements of a transformed tile (4x4) */
#define WT4 36               /* F(4x4, 3x3): elements of a transformed tile (6x6) */
#ifndef WINO4_MARGIN
#define WINO4_MARGIN 0.95 /* F(4x4, 3x3) runs where plan_wino estimates at most this fraction of F(2x2, 3x3)'s time */
#endif
/* V[xi] (and Mx[xi]) n floats apart, rounded up to a cache line and kept off multiples of 1 KiB by one more line,
 * so that the 16 stores (or loads) of a tile do not fall into a few L1 sets (64 channels of 8x8: 16 tiles of 64
 * channels are exactly 4 KiB apart; the input transform took 3x its time) */
static inline int64_t skewed(int64_t n) {
    const int64_t lines = (n + 15) / 16 * 16;
    return lines % 256 == 0 ? lines + 16 : lines;
}
#ifndef WINO_SPLIT_TILES
#define WINO_SPLIT_TILES 48 /* tiles a block from which an image too small for two blocks a thread is split in one a thread */
#endif
#define WINO_BLOCK (1 << 17) /* floats of transformed input (V) per block of tile rows (512 KiB), at least one row */

typedef struct {
    const float *x, *u, *b, *z, *params;
    float *y, *v;
    int64_t C, H, W, M, OH, OW, PT, PL, act;
    int64_t TW, ty0, nty, P, n; /* tiles per row; the block: tile rows ty0.. (nty of them, P tiles), image n */
    int64_t cchunk, mchunk;
    const int64_t *kofs; /* k * P: row k of a V[xi] */
    int taps;            /* S_WPACK 3: u holds the taps, w[m][k][c], transformed MR rows at a time (wino_weights) */
    int f4, wt, ts;      /* F(4x4, 3x3) (AVX-512, from the taps: see "F(4x4, 3x3)"); elements of a transformed tile
                            (WT or WT4); outputs along a tile's side (2 or 4) */
    int64_t call;        /* the call's number (wino_private_task) */
} wino_job;

static __thread buffer tl_wprod, tl_wv, tl_wofs, tl_wu;
#if !defined(ISA_AVX512)
static __thread buffer tl_wrows;
#endif

#if defined(ISA_AVX512)
#define EVEN_LANES _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define ODD_LANES _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#define LOW_PAIRS _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
#define HIGH_PAIRS _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)

/* count vectors of an output row's columns col.. (16 each) through the epilogue into yr (with the residual zr),
 * the last one cut at the row's ow columns */
static inline void store_row(float *yr, const float *zr, int64_t col, int64_t ow, const __m512 *v, int count,
                             const epilogue *e) {
    for (int h = 0; h < count; h++, col += 16) {
        const int64_t left = ow - col;
        if (left >= 16)
            v_store(yr + col, finish(v[h], e, 0, zr ? zr + col : NULL, 16));
        else if (left > 0)
            v_store_n(yr + col, finish(v[h], e, 0, zr ? zr + col : NULL, (int)left), (int)left);
    }
}

/* the lanes of columns q.. q+15 inside a row of w floats (q may be negative) */
static inline __mmask16 row_mask(int64_t q, int64_t w) {
    const int64_t lo = q < 0 ? -q : 0, hi = w - q < 16 ? w - q : 16;
    return hi <= lo ? 0 : (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* columns q.. q+15 of the input row xr, zero outside it (m: row_mask(q, w)) */
static inline __m512 row_load(const float *xr, int64_t q, __mmask16 m) {
    if (m == 0xFFFF) return _mm512_loadu_ps(xr + q);
    if (!m) return _mm512_setzero_ps();
    return _mm512_maskz_loadu_ps(m, (const float *)((uintptr_t)xr + (uintptr_t)(q * (int64_t)sizeof(float))));
}

/* input row ih of a channel (zeros outside its h rows) at the padded columns 2*t0 + k for 16 tiles t0.. (k < 4: the
 * tile's window), split from the row's columns q = 2*t0 - PL.. in registers (m: row_mask(q + 0, 16, 2, 18)) */
static inline __attribute__((always_inline)) void wino_row(const float *xc, int64_t ih, int64_t h, int64_t w,
                                                           int64_t q, const __mmask16 *m, __m512 *d) {
    if (ih < 0 || ih >= h) {
        d[0] = d[1] = d[2] = d[3] = _mm512_setzero_ps();
        return;
    }
    const float *xr = xc + ih * w;
    const __m512 lo = row_load(xr, q, m[0]), hi = row_load(xr, q + 16, m[1]);
    const __m512 lo2 = row_load(xr, q + 2, m[2]), hi2 = row_load(xr, q + 18, m[3]);
    d[0] = _mm512_permutex2var_ps(lo, EVEN_LANES, hi), d[1] = _mm512_permutex2var_ps(lo, ODD_LANES, hi);
    d[2] = _mm512_permutex2var_ps(lo2, EVEN_LANES, hi2), d[3] = _mm512_permutex2var_ps(lo2, ODD_LANES, hi2);
}
#endif

/* the 4x4 transform B^T d B of d[i][q] (row i, column q of VL tiles' inputs), stored at dst (V[0][c][first
 * tile]), V[xi] xs floats apart; n: tiles stored (NOTE: full stores spill into later tiles, written after) */
INLINE void wino_in_tile(vf d[4][4], float *dst, int64_t xs, int n) {
    vf r[4][4];
    for (int q = 0; q < 4; q++) { /* B^T d: rows */
        r[0][q] = v_sub(d[0][q], d[2][q]), r[1][q] = v_add(d[1][q], d[2][q]);
        r[2][q] = v_sub(d[2][q], d[1][q]), r[3][q] = v_sub(d[1][q], d[3][q]);
    }
#if defined(ISA_AVX512)
    const __mmask16 sm = first_lanes(n); /* NOTE: one masked store for both: a branch per store kept all 16 on the stack */
#define WINO_STORE(at, v) _mm512_mask_storeu_ps(at, sm, v)
#else
#define WINO_STORE(at, v) (n == VL ? v_store(at, v) : v_store_n(at, v, n))
#endif
    for (int i = 0; i < 4; i++) { /* (B^T d) B: columns */
        float *di = dst + 4 * i * xs;
        WINO_STORE(di, v_sub(r[i][0], r[i][2]));
        WINO_STORE(di + xs, v_add(r[i][1], r[i][2]));
        WINO_STORE(di + 2 * xs, v_sub(r[i][2], r[i][1]));
        WINO_STORE(di + 3 * xs, v_sub(r[i][1], r[i][3]));
    }
#undef WINO_STORE
}

#if defined(ISA_AVX512)
/* --- F(4x4, 3x3) (AVX-512 only): 4x4 output tiles from 6x6 input tiles, 36 products per output pair of channels
 * and tile of 16 outputs against 144 directly (4x fewer; F(2x2, 3x3): 2.25x), taken from the taps (S_WPACK 3) on
 * images where plan_wino estimates it faster (on small ones, transforming the weights at every call and the
 * part-empty vectors of tiles cost more than the products save).  The same steps as F(2x2, 3x3) with
 *     B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
 *     G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
 *     A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
 * Rounding: B^T and A^T hold 4, 5 and 8, so a result's error grows with its inputs' magnitudes more than
 * F(2x2, 3x3)'s (the tests hold it to 1e-4 of ONNX Runtime's direct convolution on unit-scale data). */

/* input row ih of a channel (zeros outside its h rows) at the padded columns 4*t0 + k for 16 tiles (k < 6: the
 * tile's window), from its columns q = 4*t0 - PL.. (m: row_mask(q + 16 i, w), i < 5): the four phases of 64
 * columns by two rounds of even/odd splits, columns 4t+4 and 4t+5 as phases 0 and 1 moved down a lane */
static inline __attribute__((always_inline)) void wino4_row(const float *xc, int64_t ih, int64_t h, int64_t w,
                                                            int64_t q, const __mmask16 *m, __m512 *d) {
    if (ih < 0 || ih >= h) {
        for (int k = 0; k < 6; k++) d[k] = _mm512_setzero_ps();
        return;
    }
    const float *xr = xc + ih * w;
    const __m512 v0 = row_load(xr, q, m[0]), v1 = row_load(xr, q + 16, m[1]), v2 = row_load(xr, q + 32, m[2]);
    const __m512 v3 = row_load(xr, q + 48, m[3]), v4 = row_load(xr, q + 64, m[4]);
    const __m512 ev01 = _mm512_permutex2var_ps(v0, EVEN_LANES, v1), od01 = _mm512_permutex2var_ps(v0, ODD_LANES, v1);
    const __m512 ev23 = _mm512_permutex2var_ps(v2, EVEN_LANES, v3), od23 = _mm512_permutex2var_ps(v2, ODD_LANES, v3);
    d[0] = _mm512_permutex2var_ps(ev01, EVEN_LANES, ev23), d[2] = _mm512_permutex2var_ps(ev01, ODD_LANES, ev23);
    d[1] = _mm512_permutex2var_ps(od01, EVEN_LANES, od23), d[3] = _mm512_permutex2var_ps(od01, ODD_LANES, od23);
    const __m512i n4 = _mm512_castps_si512(v4), n5 = _mm512_alignr_epi32(n4, n4, 1); /* n5[0]: column 65 */
    d[4] = _mm512_castsi512_ps(_mm512_alignr_epi32(n4, _mm512_castps_si512(d[0]), 1));
    d[5] = _mm512_castsi512_ps(_mm512_alignr_epi32(n5, _mm512_castps_si512(d[1]), 1));
}

/* B^T x of a column of six (x[i * stride]), into y[i * stride] */
#define WINO4_BT(x, y, stride)                                                                                      \
    do {                                                                                                         \
        const __m512 four_ = _mm512_set1_ps(4.0f), five_ = _mm512_set1_ps(5.0f), two_ = _mm512_set1_ps(2.0f);      \
        const __m512 x0_ = x[0], x1_ = x[stride], x2_ = x[2 * (stride)], x3_ = x[3 * (stride)];                    \
        const __m512 x4_ = x[4 * (stride)], x5_ = x[5 * (stride)];                                                 \
        const __m512 a_ = _mm512_sub_ps(x4_, x2_), b_ = _mm512_sub_ps(x3_, x1_);                                   \
        const __m512 c_ = _mm512_add_ps(x1_, x2_), e_ = _mm512_add_ps(x3_, x4_);                                   \
        const __m512 f_ = _mm512_sub_ps(x1_, x2_), g_ = _mm512_sub_ps(x4_, x3_);                                   \
        y[0] = _mm512_fnmadd_ps(five_, x2_, _mm512_fmadd_ps(four_, x0_, x4_));                                    \
        y[stride] = _mm512_fnmadd_ps(four_, c_, e_);                                                               \
        y[2 * (stride)] = _mm512_fmadd_ps(four_, f_, g_);                                                          \
        y[3 * (stride)] = _mm512_fmadd_ps(two_, b_, a_);                                                           \
        y[4 * (stride)] = _mm512_fnmadd_ps(two_, b_, a_);                                                          \
        y[5 * (stride)] = _mm512_fnmadd_ps(five_, x3_, _mm512_fmadd_ps(four_, x1_, x5_));                         \
    } while (0)

/* the 6x6 transform B^T d B of d[i][k] (row i, column k of 16 tiles' inputs), stored at dst (V[0][c][first tile]),
 * V[xi] xs floats apart; n: tiles stored */
static inline __attribute__((always_inline)) void wino4_in_tile(const __m512 d[6][6], float *dst, int64_t xs, int n) {
    __m512 r[6][6];
    for (int k = 0; k < 6; k++) WINO4_BT((&d[0][k]), (&r[0][k]), 6); /* B^T d: down each column */
    const __mmask16 sm = first_lanes(n);
    for (int i = 0; i < 6; i++) { /* (B^T d) B: along each row */
        __m512 o[6];
        WINO4_BT(r[i], o, 1);
        for (int k = 0; k < 6; k++) _mm512_mask_storeu_ps(dst + (int64_t)(6 * i + k) * xs, sm, o[k]);
    }
}

/* 1 (F(4x4, 3x3)): channels [c0, c1) of the block's input, transformed; a tile row's last two input rows are the
 * next one's first two */
static void wino4_in(const wino_job *j, int64_t c0, int64_t c1) {
    const int64_t xs = skewed(j->C * j->P);
    for (int64_t c = c0; c < c1; c++) {
        const float *xc = j->x + (j->n * j->C + c) * j->H * j->W;
        for (int64_t t0 = 0; t0 < j->TW; t0 += VL) {
            const int nt = j->TW - t0 < VL ? (int)(j->TW - t0) : VL;
            const int64_t q = 4 * t0 - j->PL;
            __mmask16 m[5];
            for (int i = 0; i < 5; i++) m[i] = row_mask(q + 16 * i, j->W);
            __m512 d[6][6];
            const int64_t ih0 = j->ty0 * 4 - j->PT;
            wino4_row(xc, ih0, j->H, j->W, q, m, d[0]);
            wino4_row(xc, ih0 + 1, j->H, j->W, q, m, d[1]);
            for (int64_t ty = 0; ty < j->nty; ty++) {
                for (int i = 2; i < 6; i++) wino4_row(xc, ih0 + 4 * ty + i, j->H, j->W, q, m, d[i]);
                wino4_in_tile(d, j->v + c * j->P + ty * j->TW + t0, xs, nt);
                for (int k = 0; k < 6; k++) d[0][k] = d[4][k], d[1][k] = d[5][k];
            }
        }
    }
}

/* U = G w G^T (6x6) of rows [0, mr) of taps w[r][k][c], into u[xi][r][c] (see wino_weights) */
static void wino4_weights(const float *restrict w, float *restrict u, int mr, int64_t C, int64_t us) {
    const __m512 q4 = _mm512_set1_ps(0.25f), s6 = _mm512_set1_ps(-1.0f / 6.0f);
    const __m512 s24 = _mm512_set1_ps(1.0f / 24.0f), s12 = _mm512_set1_ps(1.0f / 12.0f), p6 = _mm512_set1_ps(1.0f / 6.0f);
    for (int r = 0; r < mr; r++)
        for (int64_t c = 0; c < C; c += VL) {
            const int n = C - c < VL ? (int)(C - c) : VL;
            __m512 k[9], t[6][3];
            for (int i = 0; i < 9; i++) {
                const float *wi = w + ((int64_t)r * 9 + i) * C + c;
                k[i] = n == VL ? v_load(wi) : v_load_n(wi, n);
            }
            for (int b = 0; b < 3; b++) { /* G g: down the window's columns */
                const __m512 g0 = k[b], g1 = k[3 + b], g2 = k[6 + b], e = _mm512_add_ps(g0, g2);
                const __m512 a = _mm512_fmadd_ps(g0, s24, _mm512_mul_ps(g2, p6)), h = _mm512_mul_ps(g1, s12);
                t[0][b] = _mm512_mul_ps(g0, q4);
                t[1][b] = _mm512_mul_ps(_mm512_add_ps(e, g1), s6), t[2][b] = _mm512_mul_ps(_mm512_sub_ps(e, g1), s6);
                t[3][b] = _mm512_add_ps(a, h), t[4][b] = _mm512_sub_ps(a, h), t[5][b] = g2;
            }
            for (int i = 0; i < 6; i++) { /* (G g) G^T: along its rows */
                const __m512 g0 = t[i][0], g1 = t[i][1], g2 = t[i][2], e = _mm512_add_ps(g0, g2);
                const __m512 a = _mm512_fmadd_ps(g0, s24, _mm512_mul_ps(g2, p6)), h = _mm512_mul_ps(g1, s12);
                const __m512 out[6] = {_mm512_mul_ps(g0, q4), _mm512_mul_ps(_mm512_add_ps(e, g1), s6),
                                       _mm512_mul_ps(_mm512_sub_ps(e, g1), s6), _mm512_add_ps(a, h),
                                       _mm512_sub_ps(a, h), g2};
                for (int b = 0; b < 6; b++) {
                    float *ub = u + (int64_t)(6 * i + b) * us + (int64_t)r * C + c;
                    if (n == VL)
                        v_store(ub, out[b]);
                    else
                        v_store_n(ub, out[b], n);
                }
            }
        }
}

/* A^T x of a column of six (x[i * stride]), four results into y[0..3] */
#define WINO4_AT(x, y, stride)                                                                                      \
    do {                                                                                                         \
        const __m512 x1_ = x[stride], x2_ = x[2 * (stride)], x3_ = x[3 * (stride)], x4_ = x[4 * (stride)];         \
        const __m512 s1_ = _mm512_add_ps(x1_, x2_), d1_ = _mm512_sub_ps(x1_, x2_);                                 \
        const __m512 s2_ = _mm512_add_ps(x3_, x4_), d2_ = _mm512_sub_ps(x3_, x4_);                                 \
        y[0] = _mm512_add_ps(_mm512_add_ps(x[0], s1_), s2_);                                                        \
        y[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d2_, d1_);                                                     \
        y[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), s2_, s1_);                                                     \
        y[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d2_, d1_), x[5 * (stride)]);                    \
    } while (0)

#define QUAD_LO _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11)
#define QUAD_HI _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15)

/* 2 (F(4x4, 3x3)), after the products: output channel m's tiles, A^T Mx A each, interleaved into its output rows */
static void wino4_out(const wino_job *j, const float *mm, int64_t xs, int64_t m) {
    const epilogue e = {j->b ? j->b + m : NULL, j->act, j->params[0], j->params[1], j->params[2]};
    for (int64_t ty = 0; ty < j->nty; ty++) {
        const int64_t oh = (j->ty0 + ty) * 4, at = ((j->n * j->M + m) * j->OH + oh) * j->OW;
        const int rows = j->OH - oh < 4 ? (int)(j->OH - oh) : 4;
        for (int64_t t0 = 0; t0 < j->TW; t0 += VL) {
            __m512 s[4][6]; /* A^T Mx: down each column (NOTE: lanes past the row: the next one's tiles) */
            for (int b = 0; b < 6; b++) {
                __m512 x[6], y[4];
                for (int a = 0; a < 6; a++) x[a] = v_load(mm + (int64_t)(6 * a + b) * xs + ty * j->TW + t0);
                WINO4_AT(x, y, 1);
                for (int a = 0; a < 4; a++) s[a][b] = y[a];
            }
            for (int r = 0; r < rows; r++) {
                __m512 y[4]; /* (A^T Mx) A: output (4 ty + r, 4 t + k) is y[k][t] */
                WINO4_AT(s[r], y, 1);
                const __m512d lo01 = _mm512_castps_pd(_mm512_permutex2var_ps(y[0], LOW_PAIRS, y[1]));
                const __m512d hi01 = _mm512_castps_pd(_mm512_permutex2var_ps(y[0], HIGH_PAIRS, y[1]));
                const __m512d lo23 = _mm512_castps_pd(_mm512_permutex2var_ps(y[2], LOW_PAIRS, y[3]));
                const __m512d hi23 = _mm512_castps_pd(_mm512_permutex2var_ps(y[2], HIGH_PAIRS, y[3]));
                const __m512 quarter[4] = {_mm512_castpd_ps(_mm512_permutex2var_pd(lo01, QUAD_LO, lo23)),
                                           _mm512_castpd_ps(_mm512_permutex2var_pd(lo01, QUAD_HI, lo23)),
                                           _mm512_castpd_ps(_mm512_permutex2var_pd(hi01, QUAD_LO, hi23)),
                                           _mm512_castpd_ps(_mm512_permutex2var_pd(hi01, QUAD_HI, hi23))};
                const int64_t ar = at + r * j->OW;
                float *yr = j->y + ar;
                const float *zr = j->z ? j->z + ar : NULL;
                store_row(yr, zr, 4 * t0, j->OW, quarter, 4, &e);
            }
        }
    }
}
#endif

/* 1: channels [t*cchunk, ..) of the block's input, transformed */
static int wino_in_task(const void *ctx, int64_t t) {
    const wino_job *j = (const wino_job *)ctx;
    const int64_t c0 = t * j->cchunk, c1 = c0 + j->cchunk < j->C ? c0 + j->cchunk : j->C, xs = skewed(j->C * j->P);
#if defined(ISA_AVX512)
    if (j->f4) {
        wino4_in(j, c0, c1);
        return 0;
    }
    /* each input row's columns split into even and odd in registers, from masked loads of the row; a tile row's
     * last two input rows are the next one's first two */
    for (int64_t c = c0; c < c1; c++) {
        const float *xc = j->x + (j->n * j->C + c) * j->H * j->W;
        for (int64_t t0 = 0; t0 < j->TW; t0 += VL) {
            const int nt = j->TW - t0 < VL ? (int)(j->TW - t0) : VL;
            const int64_t q = 2 * t0 - j->PL; /* the padded row's column 2*t0, in the input row */
            const __mmask16 m[4] = {row_mask(q, j->W), row_mask(q + 16, j->W), row_mask(q + 2, j->W),
                                    row_mask(q + 18, j->W)};
            vf d[4][4];
            const int64_t ih0 = j->ty0 * 2 - j->PT;
            wino_row(xc, ih0, j->H, j->W, q, m, d[0]); /* NOTE: rows 0 and 1: the last tile row's 2 and 3 after */
            wino_row(xc, ih0 + 1, j->H, j->W, q, m, d[1]);
            for (int64_t ty = 0; ty < j->nty; ty++) {
                wino_row(xc, ih0 + 2 * ty + 2, j->H, j->W, q, m, d[2]);
                wino_row(xc, ih0 + 2 * ty + 3, j->H, j->W, q, m, d[3]);
                /* NOTE: with one vector of tiles a row, a full store spills into later tile rows' (not past the
                 * channel's last) */
                const int n = nt == VL || (t0 == 0 && (ty + 1) * j->TW + (VL - nt) <= j->P) ? VL : nt;
                wino_in_tile(d, j->v + c * j->P + ty * j->TW + t0, xs, n);
                for (int k = 0; k < 4; k++) d[0][k] = d[2][k], d[1][k] = d[3][k];
            }
        }
    }
#else
    /* input rows 2*ty - PT + i (i < 4) as even (ph + 2i*hv) and odd (ph + (2i+1)*hv) columns of the padded
     * row: tile t's columns are e[t], o[t], e[t+1], o[t+1] */
    const int64_t hp = j->TW + 1, hv = (hp + VL - 1) / VL * VL + VL, wq = 2 * hp; /* phase entries, stride, row */
    float *pad = grow(&tl_wrows, (wq + 8 * hv) * (int64_t)sizeof(float)), *ph = pad + wq;
    if (!pad) return -1;
    for (int64_t c = c0; c < c1; c++) {
        const float *xc = j->x + (j->n * j->C + c) * j->H * j->W;
        for (int64_t ty = 0; ty < j->nty; ty++) {
            for (int i = 0; i < 4; i++) {
                const int64_t ih = (j->ty0 + ty) * 2 - j->PT + i;
                float *e = ph + 2 * i * hv;
                if (ih < 0 || ih >= j->H) {
                    memset(e, 0, (size_t)(2 * hv) * sizeof(float));
                } else {
                    pad_row(xc + ih * j->W, pad, j->W, j->PL, wq);
                    split_row(pad, e, wq, 2, hv);
                }
            }
            for (int64_t t0 = 0; t0 < j->TW; t0 += VL) {
                vf d[4][4];
                for (int i = 0; i < 4; i++) {
                    const float *e = ph + 2 * i * hv + t0, *o = e + hv;
                    d[i][0] = v_load(e), d[i][1] = v_load(o), d[i][2] = v_load(e + 1), d[i][3] = v_load(o + 1);
                }
                wino_in_tile(d, j->v + c * j->P + ty * j->TW + t0, xs, j->TW - t0 < VL ? (int)(j->TW - t0) : VL);
            }
        }
    }
#endif
    return 0;
}

/* 2: output channels [t*mchunk, ..): their 16 products over the block's tiles, then the output tiles */
/* U = G w G^T of rows [0, mr) of taps w[r][k][c] (k = 3 kh + kw), into u[xi][r][c] (u[xi] us floats apart, us off
 * multiples of 1 KiB: 128 channels of 8 rows put the 16 stores 4 KiB apart, 10% of a 10x10 call): per vector of
 * channels, G's rows are w0, (w0 + w1 + w2) / 2, (w0 - w1 + w2) / 2 and w2, first down the window's columns, then
 * along its rows */
static void wino_weights(const float *restrict w, float *restrict u, int mr, int64_t C, int64_t us) {
    const vf half = v_set1(0.5f);
    for (int r = 0; r < mr; r++)
        for (int64_t c = 0; c < C; c += VL) {
            const int n = C - c < VL ? (int)(C - c) : VL;
            vf k[9], t[4][3];
            for (int q = 0; q < 9; q++) k[q] = n == VL ? v_load(w + ((int64_t)r * 9 + q) * C + c)
                                                       : v_load_n(w + ((int64_t)r * 9 + q) * C + c, n);
            for (int b = 0; b < 3; b++) {
                const vf even = v_add(k[b], k[6 + b]);
                t[0][b] = k[b], t[3][b] = k[6 + b];
                t[1][b] = v_fma(v_add(even, k[3 + b]), half, v_zero());
                t[2][b] = v_fma(v_sub(even, k[3 + b]), half, v_zero());
            }
            for (int a = 0; a < 4; a++) {
                const vf even = v_add(t[a][0], t[a][2]);
                const vf out[4] = {t[a][0], v_fma(v_add(even, t[a][1]), half, v_zero()),
                                   v_fma(v_sub(even, t[a][1]), half, v_zero()), t[a][2]};
                for (int b = 0; b < 4; b++) {
                    float *d = u + (int64_t)(4 * a + b) * us + (int64_t)r * C + c;
                    if (n == VL)
                        v_store(d, out[b]);
                    else
                        v_store_n(d, out[b], n);
                }
            }
        }
}

/* the products Mx[xi] of U[xi]'s rows a (C apart; rows of them) with V[xi]'s columns, into Mx's rows mrow..: per
 * panel of columns, MR rows at a time (the panel's V stays in L1 across them) */
static void wino_products(const wino_job *j, int xi, const float *a, float *mx, int64_t xs, int64_t mrow,
                          int64_t rows) {
    const int64_t P = j->P;
    const float *vx = j->v + xi * skewed(j->C * P);
    for (int64_t j0 = 0; j0 < P; j0 += NR) {
        int nl[NV];
        const float *bp[NV];
        float *cp[NV];
        for (int q = 0; q < NV; q++) {
            const int64_t left = P - j0 - q * VL;
            nl[q] = left >= VL ? VL : left > 0 ? (int)left : 0;
            bp[q] = vx + j0 + q * VL; /* NOTE: lanes past P read the next row (or V's slack), never stored */
        }
        for (int64_t r = 0; r < rows; r += MR) {
            const int mr = rows - r < MR ? (int)(rows - r) : MR;
            for (int q = 0; q < NV; q++) cp[q] = mx + xi * xs + (mrow + r) * P + j0 + q * VL;
            tile(0, 0, j->C, a + r * j->C, j->C, bp, j->kofs, cp, NULL, 0, P, mr, nl, 0, NULL);
        }
    }
}

static int wino_out_task(const void *ctx, int64_t t) {
    const wino_job *j = (const wino_job *)ctx;
    const int64_t m0 = t * j->mchunk, m1 = m0 + j->mchunk < j->M ? m0 + j->mchunk : j->M, mc = m1 - m0, P = j->P;
    const int64_t xs = skewed(mc * P);
    float *mx = grow(&tl_wprod, (j->wt * xs + NR) * (int64_t)sizeof(float)); /* Mx[xi][m - m0][tile] */
    if (!mx) return -1;
    if (j->taps) { /* MR rows of U at a time, from the taps: all 16 (36) products of those rows, then the next */
        const int64_t us = skewed(MR * j->C); /* U[xi] apart: see skewed */
        float *u = grow(&tl_wu, j->wt * us * (int64_t)sizeof(float));
        if (!u) return -1;
        for (int64_t m = m0; m < m1; m += MR) {
            const int mr = m1 - m < MR ? (int)(m1 - m) : MR;
#if defined(ISA_AVX512)
            if (j->f4)
                wino4_weights(j->u + m * 9 * j->C, u, mr, j->C, us);
            else
#endif
                wino_weights(j->u + m * 9 * j->C, u, mr, j->C, us);
            for (int xi = 0; xi < j->wt; xi++) wino_products(j, xi, u + xi * us, mx, xs, m - m0, mr);
        }
#if defined(ISA_AVX512)
        if (j->f4) {
            for (int64_t m = m0; m < m1; m++) wino4_out(j, mx + (m - m0) * P, xs, m);
            return 0;
        }
#endif
    } else {
        for (int xi = 0; xi < WT; xi++) wino_products(j, xi, j->u + ((int64_t)xi * j->M + m0) * j->C, mx, xs, 0, mc);
    }
    for (int64_t m = m0; m < m1; m++) {
        const epilogue e = {j->b ? j->b + m : NULL, j->act, j->params[0], j->params[1], j->params[2]};
        const float *mm = mx + (m - m0) * P;
        for (int64_t ty = 0; ty < j->nty; ty++) {
            const int64_t oh = (j->ty0 + ty) * 2, at = ((j->n * j->M + m) * j->OH + oh) * j->OW;
            const int rows = j->OH - oh < 2 ? 1 : 2;
            for (int64_t t0 = 0; t0 < j->TW; t0 += VL) {
                vf s0[4], s1[4];
                for (int i = 0; i < 4; i++) { /* Mx A: columns (NOTE: lanes past the row: the next one's tiles) */
                    const float *a = mm + (4 * i) * xs + ty * j->TW + t0;
                    const vf a0 = v_load(a), a1 = v_load(a + xs), a2 = v_load(a + 2 * xs), a3 = v_load(a + 3 * xs);
                    s0[i] = v_add(v_add(a0, a1), a2), s1[i] = v_sub(v_sub(a1, a2), a3);
                }
                /* A^T (Mx A): rows; output (2 ty + a, 2 t + b) is out[2a + b][t] */
                const vf out[4] = {v_add(v_add(s0[0], s0[1]), s0[2]), v_add(v_add(s1[0], s1[1]), s1[2]),
                                   v_sub(v_sub(s0[1], s0[2]), s0[3]), v_sub(v_sub(s1[1], s1[2]), s1[3])};
                for (int r = 0; r < rows; r++) {
                    const int64_t ar = at + r * j->OW;
                    float *yr = j->y + ar;
                    const float *zr = j->z ? j->z + ar : NULL;
#if defined(ISA_AVX512)
                    /* the row's columns 2*t0.. as two vectors, the tiles' pairs interleaved */
                    const __m512 half[2] = {_mm512_permutex2var_ps(out[2 * r], LOW_PAIRS, out[2 * r + 1]),
                                            _mm512_permutex2var_ps(out[2 * r], HIGH_PAIRS, out[2 * r + 1])};
                    store_row(yr, zr, 2 * t0, j->OW, half, 2, &e);
#else
                    float pair[2][VL], row[2 * VL];
                    v_store(pair[0], out[2 * r]), v_store(pair[1], out[2 * r + 1]);
                    for (int l = 0; l < VL; l++) row[2 * l] = pair[0][l], row[2 * l + 1] = pair[1][l];
                    for (int h = 0; h < 2; h++) {
                        const int64_t col = 2 * t0 + VL * h, left = j->OW - col;
                        if (left >= VL)
                            v_store(yr + col, finish(v_load(row + VL * h), &e, 0, zr ? zr + col : NULL, VL));
                        else if (left > 0)
                            v_store_n(yr + col, finish(v_load(row + VL * h), &e, 0, zr ? zr + col : NULL, (int)left),
                                      (int)left);
                    }
#endif
                }
            }
        }
    }
    return 0;
}

/* the input transform of the image (one image, whole) on each thread, kept for its next task of the same call (tl_wv_call:
 * the call's number), then output channels [t*mchunk, ..) */
static __thread int64_t tl_wv_call = -1;

static int wino_private_task(const void *ctx, int64_t t) {
    const wino_job *g = (const wino_job *)ctx;
    wino_job j = *g;
    j.v = grow(&tl_wv, (j.wt * skewed(j.C * j.P) + NR) * (int64_t)sizeof(float));
    if (!j.v) return -1;
    if (tl_wv_call != g->call) {
        tl_wv_call = -1;
        j.cchunk = j.C;
        if (wino_in_task(&j, 0)) return -1;
        tl_wv_call = g->call;
    }
    return wino_out_task(&j, t);
}

/* a whole block (tasks: image t / blocks, tile rows from (t % blocks) * nty) on one thread: its own V */
static int wino_block_task(const void *ctx, int64_t t) {
    const wino_job *g = (const wino_job *)ctx;
    wino_job j = *g;
    const int64_t TH = (j.OH + j.ts - 1) / j.ts, blocks = (TH + g->nty - 1) / g->nty;
    j.n = t / blocks, j.ty0 = t % blocks * g->nty;
    j.nty = TH - j.ty0 < g->nty ? TH - j.ty0 : g->nty;
    j.P = j.nty * j.TW;
    j.v = grow(&tl_wv, (j.wt * skewed(j.C * j.P) + NR) * (int64_t)sizeof(float));
    int64_t *kofs = grow(&tl_wofs, j.C * (int64_t)sizeof(int64_t));
    if (!j.v || !kofs) return -1;
    for (int64_t k = 0; k < j.C; k++) kofs[k] = k * j.P;
    j.kofs = kofs, j.cchunk = j.C;
    if (wino_in_task(&j, 0)) return -1;
    for (int64_t m = 0; m * j.mchunk < j.M; m++)
        if (wino_out_task(&j, m)) return -1;
    return 0;
}

/* How a call shares its work out (see wino_conv): tile rows a block, whether each thread takes whole blocks, and
 * the estimated cycles of the busiest thread (cost), for F(2x2, 3x3) or (f4) F(4x4, 3x3).  Per-item cycles timed
 * at 1 thread on chains of 64-channel convolutions (64x64 and 32x32): a product's vector multiply-add 1; an input
 * transform's 16 tiles of a channel's tile row 100 (F(4x4): 340); an output transform's 16 tiles of an output
 * channel's tile row 160 (550); a vector of U transformed from the taps 3. */
typedef struct {
    int64_t nty;
    int whole;
    double cost;
} wino_plan;

static wino_plan plan_wino(int64_t N, int64_t C, int64_t M, int64_t OH, int64_t OW, int taps, int f4, int threads) {
    const int64_t ts = f4 ? 4 : 2, wt = f4 ? WT4 : WT, TH = (OH + ts - 1) / ts, TW = (OW + ts - 1) / ts;
    wino_plan pl;
    /* blocks of tile rows whose V fits a core's L2 (WINO_BLOCK), as even as they go; where there are enough of
     * them, each thread takes whole blocks; else each block's two steps are shared out in turn */
    const int64_t per_row = wt * C * TW, fit = WINO_BLOCK / per_row > 1 ? WINO_BLOCK / per_row : 1;
    const int64_t nblk = (TH + fit - 1) / fit;
    pl.nty = (TH + nblk - 1) / nblk;
    pl.whole = threads == 1 || N * nblk >= 2 * (int64_t)threads;
    if (!pl.whole && N == 1) {
        /* one block a thread where each still has WINO_SPLIT_TILES tiles (of 2x2): the two steps shared out make
         * each thread read the V the other wrote (64 -> 64 channels on 20x20 at 2 threads: 0.87x the time; 32 on
         * 32x32: 0.74x) */
        const int64_t rows = (TH + threads - 1) / threads;
        if (rows < fit && rows < TH && rows * TW * ts * ts >= 4 * WINO_SPLIT_TILES) pl.nty = rows, pl.whole = 1;
    }
    const double in_c = f4 ? 340.0 : 100.0, out_c = f4 ? 550.0 : 160.0, u_c = taps ? 3.0 : 0.0;
    const double vecs = (double)((TW + VL - 1) / VL), cv = (double)((C + VL - 1) / VL), w = (double)wt;
    if (pl.whole) {
        const int64_t blocks = N * ((TH + pl.nty - 1) / pl.nty), mine = (blocks + threads - 1) / threads;
        const double rows = (double)TH / (double)((TH + pl.nty - 1) / pl.nty); /* a block's, on average */
        const double lanes = ceil(rows * (double)TW / VL); /* vectors of tiles a product row computes */
        pl.cost = (double)mine * ((double)M * (double)C * w * lanes + (double)M * cv * w * u_c +
                                  rows * vecs * ((double)C * in_c + (double)M * out_c));
    } else {
        /* the output channels shared out; the input transformed whole on each thread (one image) or shared */
        const double mt = ceil((double)M / threads), lanes = (double)((TH * TW + VL - 1) / VL);
        const double in = (double)C * (double)TH * vecs * in_c / (N == 1 ? 1.0 : (double)threads);
        pl.cost = (double)N * (in + mt * (double)C * w * lanes + mt * cv * w * u_c + mt * (double)TH * vecs * out_c);
    }
    return pl;
}

static int wino_conv(void **p, const int64_t *s, int threads) {
    if (s[S_GROUP] != 1 || s[S_BT] || s[S_ZROW] || s[S_KH] != 3 || s[S_KW] != 3 || s[S_SH] != 1 || s[S_SW] != 1 ||
        s[S_DH] != 1 || s[S_DW] != 1 || s[S_PT] < 0 || s[S_PL] < 0)
        return -2;
    wino_job j;
    memset(&j, 0, sizeof j);
    j.x = p[0], j.u = p[1], j.b = p[2], j.z = p[3], j.y = p[4], j.params = p[5];
    j.C = s[S_C], j.H = s[S_H], j.W = s[S_W], j.M = s[S_M], j.OH = s[S_OH], j.OW = s[S_OW], j.PT = s[S_PT];
    j.PL = s[S_PL], j.act = s[S_ACT], j.taps = s[S_WPACK] == 3;
    const int64_t N = s[S_N];
    wino_plan pl = plan_wino(N, j.C, j.M, j.OH, j.OW, j.taps, 0, threads);
#if defined(ISA_AVX512)
    /* F(4x4, 3x3) where the estimate says so, by a margin (the estimate is rough) */
    if (j.taps && s[S_WINO4] != 0) {
        const wino_plan p4 = plan_wino(N, j.C, j.M, j.OH, j.OW, 1, 1, threads);
        if (s[S_WINO4] > 0 || p4.cost < WINO4_MARGIN * pl.cost) pl = p4, j.f4 = 1;
    }
#endif
    j.wt = j.f4 ? WT4 : WT, j.ts = j.f4 ? 4 : 2;
    const int64_t TH = (j.OH + j.ts - 1) / j.ts;
    j.TW = (j.OW + j.ts - 1) / j.ts;
    j.nty = pl.nty;
    const int64_t blocks = N * ((TH + j.nty - 1) / j.nty);
    if (pl.whole) {
        j.mchunk = 2 * MR;
        return share_out(blocks, threads, wino_block_task, &j);
    }
    j.nty = TH, j.P = TH * j.TW;
    int64_t *kofs = grow(&tl_wofs, j.C * (int64_t)sizeof(int64_t));
    if (!kofs) return -1;
    for (int64_t k = 0; k < j.C; k++) kofs[k] = k * j.P;
    j.kofs = kofs;
    /* about two tasks per thread in each step: runs of channels, runs of whole MR-row tiles of output channels */
    const int64_t want = 2 * (int64_t)threads;
    j.cchunk = (j.C + want - 1) / want;
    const int64_t tiles = (j.M + MR - 1) / MR, per = (tiles + want - 1) / want;
    j.mchunk = per * MR;
    const int64_t ctasks = (j.C + j.cchunk - 1) / j.cchunk, mtasks = (j.M + j.mchunk - 1) / j.mchunk;
    if (N == 1) { /* each thread transforms the image itself (wino_private_task): no barrier, no V shared */
        j.call = next_call();
        return share_out(mtasks, threads, wino_private_task, &j);
    }
    j.v = grow(&tl_wv, (j.wt * skewed(j.C * j.P) + NR) * (int64_t)sizeof(float));
    if (!j.v) return -1;
    const int64_t n[2] = {ctasks, mtasks};
    const task_fn step[2] = {wino_in_task, wino_out_task};
    for (j.n = 0; j.n < N; j.n++)
        if (share_steps(2, n, step, threads, &j)) return -1;
    return 0;
}

/* --- few input channels: a direct convolution (first layers) ----------------------------------------------
 * With C*KH*KW at most S_SMALL products per output (an RGB image's 3x3 window: 27), a GEMM tile spends as
 * long on its setup, its gathered panel and its stores as on its few multiply-adds (YOLO's 3 -> 16 channels at
 * stride 2 on 160x160 ran at 41 GMAC/s on 2 threads, a third of the peak).  Here 16 output positions of a row
 * are one vector (stride 2: the even lanes of two loads of the input row) and 16 output channels are 16
 * accumulators; each of the K taps is one input vector times 16 broadcast weights, and the results are whole
 * vectors of output rows, stored with the epilogue.  AVX-512 only (elsewhere the GEMM paths run); taken up to
 * S_SMALL products per output. */

#define SMALL_MASKS 2048 /* the load masks a task keeps: blocks of 16 output columns times KW times 2 */

#if defined(ISA_AVX512)
typedef struct {
    const float *x, *wt, *b, *z, *params; /* wt: the weights tap-major, wt[(k * nmb + mb) * 16 + r] = W[16 mb + r][k] */
    const float *bias_pad;                 /* b with zeros to a whole number of 16 */
    float *y;
    int64_t C, H, W, M, OH, OW, SH, SW, PT, PL, KH, KW, K, act, nmb, rows, tasks_per_image;
} small_job;

static int small_task(const void *ctx, int64_t t) {
    const small_job *j = (const small_job *)ctx;
    const int64_t n = t / j->tasks_per_image, oh0 = t % j->tasks_per_image * j->rows;
    const int64_t oh1 = oh0 + j->rows < j->OH ? oh0 + j->rows : j->OH, ohw = j->OH * j->OW;
    /* per block of 16 output columns and kw: the lanes of its first (and, at stride 2, second) load inside the row */
    __mmask16 masks[SMALL_MASKS];
    const int64_t nblk = (j->OW + 15) / 16;
    if (nblk * j->KW * 2 > SMALL_MASKS) return -1;
    for (int64_t bk = 0; bk < nblk; bk++)
        for (int64_t kw = 0; kw < j->KW; kw++) {
            const int64_t q = bk * 16 * j->SW - j->PL + kw; /* lane l reads column q + l*SW */
            masks[(bk * j->KW + kw) * 2] = row_mask(q, j->W), masks[(bk * j->KW + kw) * 2 + 1] = row_mask(q + 16, j->W);
        }
    /* NOTE: row by row (blocks of columns inside), so the task's input rows and output rows stay in cache: with
     * the blocks of columns outside, YOLO's first convolution at 480x640 took 1.5x the time in its unit */
    for (int64_t oh = oh0; oh < oh1; oh++)
        for (int64_t ow0 = 0; ow0 < j->OW; ow0 += 16) {
            const int nl = j->OW - ow0 < 16 ? (int)(j->OW - ow0) : 16;
            const __mmask16 *mk = masks + ow0 / 16 * j->KW * 2;
            for (int64_t mb = 0; mb < j->nmb; mb++) {
                __m512 acc[16];
                for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_ps();
                for (int64_t c = 0; c < j->C; c++)
                    for (int64_t kh = 0; kh < j->KH; kh++) {
                        const int64_t ih = oh * j->SH - j->PT + kh;
                        if (ih < 0 || ih >= j->H) continue;
                        const float *xr = j->x + ((n * j->C + c) * j->H + ih) * j->W;
                        const float *wk = j->wt + ((c * j->KH + kh) * j->KW * j->nmb + mb) * 16;
                        for (int64_t kw = 0; kw < j->KW; kw++, wk += j->nmb * 16) {
                            const int64_t q = ow0 * j->SW - j->PL + kw;
                            __m512 v = row_load(xr, q, mk[2 * kw]);
                            if (j->SW == 2) v = _mm512_permutex2var_ps(v, EVEN_LANES, row_load(xr, q + 16, mk[2 * kw + 1]));
                            for (int r = 0; r < 16; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(wk[r]), v, acc[r]);
                        }
                    }
                /* the epilogue in registers (bias from the padded copy), then the rows of real channels; NOTE:
                 * indexed by a variable, the accumulators lived on the stack for the whole loop */
                const float *bias = j->b ? j->bias_pad + 16 * mb : NULL;
                const int64_t mc = j->M - 16 * mb < 16 ? j->M - 16 * mb : 16;
                const epilogue e = {NULL, j->z ? 0 : j->act, j->params[0], j->params[1], j->params[2]};
                float *y0 = j->y + (n * j->M + 16 * mb) * ohw + oh * j->OW + ow0;
#pragma GCC unroll 16
                for (int r = 0; r < 16; r++) {
                    if (r >= mc) break;
                    __m512 v = bias ? _mm512_add_ps(acc[r], _mm512_set1_ps(bias[r])) : acc[r];
                    v = activate(v, &e);
                    if (nl == 16)
                        v_store(y0 + r * ohw, v);
                    else
                        v_store_n(y0 + r * ohw, v, nl);
                }
            }
    }
    if (j->z) { /* the residual and the activation after it, over the task's rows */
        const epilogue ea = {NULL, j->act, j->params[0], j->params[1], j->params[2]};
        const int64_t at = n * j->M * ohw + oh0 * j->OW;
        add_residual(j->y + at, j->z + at, j->M, ohw, (oh1 - oh0) * j->OW, &ea);
    }
    return 0;
}
#endif

/* the direct path where it is taken (see above); 1: not taken */
static int small_conv(void **p, const int64_t *s, int threads) {
#if defined(ISA_AVX512)
    const int64_t K = s[S_C] * s[S_KH] * s[S_KW];
    if (s[S_GROUP] != 1 || s[S_BT] || s[S_ZROW] || s[S_WPACK] > 1 || K > s[S_SMALL] || s[S_KH] * s[S_KW] < 2 ||
        s[S_DH] != 1 || s[S_DW] != 1 || s[S_SW] < 1 || s[S_SW] > 2 || s[S_SH] < 1 || s[S_PT] < 0 || s[S_PL] < 0 ||
        (s[S_OW] + 15) / 16 * s[S_KW] * 2 > SMALL_MASKS)
        return 1;
    small_job j;
    memset(&j, 0, sizeof j);
    j.x = p[0], j.b = p[2], j.z = p[3], j.y = p[4], j.params = p[5];
    j.C = s[S_C], j.H = s[S_H], j.W = s[S_W], j.M = s[S_M], j.OH = s[S_OH], j.OW = s[S_OW], j.SH = s[S_SH];
    j.SW = s[S_SW], j.PT = s[S_PT], j.PL = s[S_PL], j.KH = s[S_KH], j.KW = s[S_KW], j.K = K, j.act = s[S_ACT];
    j.nmb = (j.M + 15) / 16;
    float *wt = grow(&tl_weights, K * j.nmb * 16 * (int64_t)sizeof(float));
    if (!wt) return -1;
    const float *w = p[1];
    for (int64_t k = 0; k < K; k++)
        for (int64_t m = 0; m < j.nmb * 16; m++) {
            float v = 0.0f;
            if (m < j.M) v = s[S_WPACK] ? w[(m / PANEL * K + k) * PANEL + m % PANEL] : w[m * K + k];
            wt[(k * j.nmb + m / 16) * 16 + m % 16] = v;
        }
    j.wt = wt;
    if (j.b) {
        float *bp = grow(&tl_bias, j.nmb * 16 * (int64_t)sizeof(float));
        if (!bp) return -1;
        for (int64_t m = 0; m < j.nmb * 16; m++) bp[m] = m < j.M ? j.b[m] : 0.0f;
        j.bias_pad = bp;
    }
    /* about 4 tasks per thread, each whole output rows of one image */
    const int64_t want = (4 * threads + s[S_N] - 1) / s[S_N];
    j.rows = (j.OH + want - 1) / want;
    j.tasks_per_image = (j.OH + j.rows - 1) / j.rows;
    return share_out(s[S_N] * j.tasks_per_image, threads, small_task, &j);
#else
    (void)p, (void)s, (void)threads;
    return 1;
#endif
}

int pliant_kernel(void **p, const int64_t *s) {
    job j;
    memset(&j, 0, sizeof j);
    j.x = p[0], j.w = p[1], j.b = p[2], j.z = p[3], j.y = p[4], j.params = p[5];
    const int64_t N = s[S_N];
    j.C = s[S_C], j.H = s[S_H], j.W = s[S_W], j.M = s[S_M], j.OH = s[S_OH], j.OW = s[S_OW], j.SH = s[S_SH];
    j.SW = s[S_SW], j.PT = s[S_PT], j.PL = s[S_PL], j.DH = s[S_DH], j.DW = s[S_DW], j.KH = s[S_KH], j.KW = s[S_KW];
    j.G = s[S_GROUP], j.act = s[S_ACT];
    j.cg = j.C / j.G, j.mg = j.M / j.G, j.K = j.cg * j.KH * j.KW, j.ohw = j.OH * j.OW;
    j.wp = (j.W + j.SW - 1) / j.SW, j.npm = (j.mg + MR - 1) / MR;
    if (N == 0 || j.M == 0 || j.ohw == 0) return 0;
    int threads = 1;
#ifdef _OPENMP
    if ((double)N * (double)j.M * (double)j.K * (double)j.ohw >= (double)s[S_PARALLEL]) threads = omp_get_max_threads();
#endif
    if (s[S_WPACK] == 2 || s[S_WPACK] == 3) return wino_conv(p, s, threads);
    int rc = small_conv(p, s, threads);
    if (rc != 1) return rc;
    rc = swap_conv(p, s, threads);
    if (rc != 1) return rc;
    if (s[S_WPACK]) { /* panels too empty for the turned-around product: the weights as rows again */
        float *w = grow(&tl_weights, j.M * j.K * (int64_t)sizeof(float));
        if (!w) return -1;
        const float *wp = p[1];
        for (int64_t m = 0; m < j.M; m++)
            for (int64_t k = 0; k < j.K; k++) w[m * j.K + k] = wp[(m / PANEL * j.K + k) * PANEL + m % PANEL];
        j.w = w;
    }
    const int64_t khw = j.KH * j.KW;

    /* DIRECT computes an output row as whole vectors (VL columns) and saves the gather, whose share of the
     * time falls with the output channels (27% at 16, 7% at 128): it is taken when the percentage of
     * lanes wasted times the output channels is at most S_DIRECT.  (Stride 2 lost either way: a copy of
     * the input costs as much as gathering the quarter as many patches.) */
    const int64_t lanes_per_row = (j.OW + VL - 1) / VL * VL;
    if (j.KH == 1 && j.KW == 1 && j.SH == 1 && j.SW == 1 && j.PT == 0 && j.PL == 0 && j.OH == j.H && j.OW == j.W)
        j.mode = FLAT;
    else if (j.SW == 1 && (lanes_per_row - j.OW) * 100 * j.mg <= s[S_DIRECT] * lanes_per_row)
        j.mode = DIRECT;
    else
        j.mode = GATHER;

    /* K blocks of kcb rows; column blocks of nc (a multiple of NR) so a block's panels fit the budget */
    j.kcb = s[S_KBLOCK] < j.K ? s[S_KBLOCK] : j.K;
    if (j.kcb < 1) j.kcb = 1;
    j.nkb = j.K > 0 ? (j.K + j.kcb - 1) / j.kcb : 1;
    const int64_t all = (j.ohw + NR - 1) / NR * NR;
    j.nc = s[S_BLOCK] / j.kcb / NR * NR;
    j.nc = j.nc < NR ? NR : j.nc > all ? all : j.nc;
    j.mblk = 1;
#ifdef _OPENMP
    if (threads > 1) {
        /* about 4 tasks per thread, so that a thread that wakes late still gets its share */
        const int64_t budget = j.nc, per_image = (4 * threads + N * j.G - 1) / (N * j.G);
        const int64_t nc = ((j.ohw + per_image - 1) / per_image + NR - 1) / NR * NR;
        if (nc < j.nc) j.nc = nc;
        /* too few blocks of whole panels to share evenly (a 256-channel 10x10 convolution: 32 + 32 + 32 + 4
         * columns, 1.65x the speed of one thread on two): whole images' columns, output channels shared
         * (each block gathers its patches again; 1.9x in two blocks, 1.5x in eight) */
        if (column_share(j.ohw, j.nc, N * j.G, threads) > 1.15 && j.mg >= 64) {
            j.nc = budget;
            j.mblk = threads;
        }
    }
#endif
    j.ppb = (j.npm + j.mblk - 1) / j.mblk; /* weight panels a block */
    j.mblk = (j.npm + j.ppb - 1) / j.ppb;
    j.bt = (int)s[S_BT];
    if (j.bt < 0 || j.bt > 2 || (j.bt && (j.mode != FLAT || N != 1 || j.G != 1))) return -2;
    j.zrow = s[S_ZROW] != 0;
    if (j.zrow && (N != 1 || j.G != 1)) return -2;
    j.pack = j.mode == FLAT && (j.bt || j.ppb >= PACK_PANELS);
    if (j.mode == DIRECT) { /* whole output rows, about nc columns */
        j.rows = j.nc / j.OW > 1 ? j.nc / j.OW : 1;
        j.nblk = (j.OH + j.rows - 1) / j.rows;
        j.wq = j.OW + (j.KW - 1) * j.DW; /* the padded width the windows span */
        j.src_rows = (j.rows - 1) * j.SH + (j.KH - 1) * j.DH + 1;
    } else {
        j.nblk = (j.ohw + j.nc - 1) / j.nc;
    }
    j.ntasks = N * j.G * j.nblk * j.mblk;
    j.npan = j.nc / NR, j.nchunks = j.nc / CHUNK;
    j.maxseg = j.nchunks * (CHUNK / j.OW + 2 < CHUNK ? CHUNK / j.OW + 2 : CHUNK);
    j.rows_in = (j.nc + j.OW - 1) / j.OW * j.SH + (j.KH - 1) * j.DH + 1;
    if (j.rows_in > j.H) j.rows_in = j.H;

    /* per window position: the source offset, and the output columns that read inside the row (GATHER) */
    int64_t *koff = grow(&tl_window, (khw + 2 * j.KW) * (int64_t)sizeof(int64_t)), *owlo = koff + khw, *owhi = owlo + j.KW;
    if (!koff) return -1;
    for (int64_t kw = 0; kw < j.KW; kw++) {
        const int64_t off = kw * j.DW - j.PL, sw = j.SW; /* iw = ow*SW + off */
        const int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw, hi = j.W - 1 - off < 0 ? 0 : (j.W - 1 - off) / sw + 1;
        owlo[kw] = lo > j.OW ? j.OW : lo;
        owhi[kw] = hi > j.OW ? j.OW : hi;
        const int64_t q = off >= 0 ? off / sw : -((-off + sw - 1) / sw), ph = off - q * sw;
        for (int64_t kh = 0; kh < j.KH; kh++) koff[kh * j.KW + kw] = (kh * j.DH * sw + ph) * j.wp + q;
    }
    j.koff = koff;
    const geometry geo = {j.H, j.W, j.OW, j.SH, j.PT, j.DH, j.KH, j.KW, j.SW, j.wp, owlo, owhi};
    j.geo = geo;

    return share_out(j.ntasks, threads, conv_task, &j);
}

