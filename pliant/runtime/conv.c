/* pliant: float32 NCHW 2-D convolution in one call: patches gathered straight into packed panels,
 * a register-blocked GEMM of our own and a fused epilogue,
 *
 *     y = act(conv(x, w) + z + b)      (b per output channel, z a tensor of y's shape; both optional)
 *
 * act: 0 none, 1 max(v, 0), 2 min(max(v, lo), hi), 3 v < 0 ? alpha*v : v.
 *
 * Per image and group the product is Y (mg x OH*OW) = W (mg x K) * P (K x OH*OW), K = Cg*KH*KW, P the
 * patch matrix.  The weights are packed once per call into MR-row panels (K x MR, k-major, zero rows past
 * the group's end).  The output columns are cut into blocks (tasks, shared out over OpenMP threads); a
 * task gathers its block of P, KC rows at a time, directly as NR-column panels (KC x NR contiguous, zero
 * past the image's end), so P is never packed twice, then runs the MR x NR microkernel over every
 * (weight panel, patch panel) pair.  The last K block applies the epilogue in the microkernel's store,
 * while the tile is in registers.  Nothing is shared between tasks but read-only input, so one
 * `omp parallel` region does the whole call (no other thread pool is woken).
 *
 * A stride s > 1 along the width is first split into s phases per input row (x[.., t*s + p] at phase p,
 * position t), after which every window row is a contiguous run again, as for stride 1, and the gather
 * is masked vector loads (AVX-512) or plain copies.
 *
 * Entry (the kernel layer's calling convention): int pliant_kernel(void **p, const int64_t *s)
 *   p: x, w, b (or NULL), z (or NULL), y, params (float[3]: lo, hi, alpha)
 *   s: see the S_* indices below.  Returns 0, or -1 when a scratch buffer cannot be allocated.
 * The caller checks every size against the arrays before calling.
 * Scratch buffers are kept per thread for the next call (libgomp reuses its threads).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

enum {
    S_N, S_C, S_H, S_W, S_M, S_KH, S_KW, S_OH, S_OW, S_SH, S_SW, S_DH, S_DW, S_PT, S_PL,
    S_GROUP, S_ACT, S_BLOCK, S_KBLOCK, S_PARALLEL, S_COUNT
};

/* --- vectors: AVX-512, AVX2 + FMA, or plain C ----------------------------------------------------
 * MR x NR is the microkernel's tile: MR rows of the weights broadcast against NV vectors of VL floats of
 * one patch row; MR*NV accumulators stay in registers (16 of 32 zmm, 12 of 16 ymm). */
#if defined(__AVX512F__)
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
static inline vf v_max(vf a, vf b) { return _mm512_max_ps(a, b); } /* a > b ? a : b: b where either is NaN */
static inline vf v_min(vf a, vf b) { return _mm512_min_ps(a, b); } /* a < b ? a : b */
static inline vf v_leaky(vf v, vf alpha) {
    return _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v, alpha);
}
static inline __mmask16 first_lanes(int n) { return (__mmask16)((1u << n) - 1u); }
static inline vf v_load_n(const float *p, int n) { return _mm512_maskz_loadu_ps(first_lanes(n), p); }
static inline void v_store_n(float *p, vf v, int n) { _mm512_mask_storeu_ps(p, first_lanes(n), v); }
#elif defined(__AVX2__) && defined(__FMA__)
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
static inline vf v_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf v_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf v_leaky(vf v, vf alpha) {
    return _mm256_blendv_ps(v, _mm256_mul_ps(v, alpha), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
}
static inline __m256i first_lanes(int n) { return _mm256_loadu_si256((const __m256i *)(lane_table + 8 - n)); }
static inline vf v_load_n(const float *p, int n) { return _mm256_maskload_ps(p, first_lanes(n)); }
static inline void v_store_n(float *p, vf v, int n) { _mm256_maskstore_ps(p, first_lanes(n), v); }
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
static inline vf v_max(vf a, vf b) { return a > b ? a : b; }
static inline vf v_min(vf a, vf b) { return a < b ? a : b; }
static inline vf v_leaky(vf v, vf alpha) { return v < 0.0f ? alpha * v : v; }
static inline vf v_load_n(const float *p, int n) { return n > 0 ? *p : 0.0f; }
static inline void v_store_n(float *p, vf v, int n) { if (n > 0) *p = v; }
#endif
#define NR (VL * NV)
#define CHUNK 16 /* lanes per gather step (one zmm); NR is a multiple of it */

/* --- scratch ---------------------------------------------------------------------------------------- */

typedef struct {
    void *p;
    int64_t cap;
} buffer;

static __thread buffer tl_panels, tl_table, tl_split, tl_shared;

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
    const float *z;    /* the residual at the tile (rows ldc apart), or NULL */
    int64_t act;
    float lo, hi, alpha;
} epilogue;

static inline vf finish(vf v, const epilogue *e, int r, const float *zr, int n) {
    if (zr) v = v_add(v, n == VL ? v_load(zr) : v_load_n(zr, n));
    if (e->bias) v = v_add(v, v_set1(e->bias[r]));
    switch (e->act) {
    case 1: v = v_max(v_zero(), v); break; /* NaN stays NaN, as np.maximum (v < 0 ? 0 : v) */
    case 2: v = v_min(v_set1(e->hi), v_max(v_set1(e->lo), v)); break; /* NaN stays NaN, as v < lo ? lo : v */
    case 3: v = v_leaky(v, v_set1(e->alpha)); break;
    default: break;
    }
    return v;
}

/* c[0:mr, 0:nr] = (accumulate ? c : 0) + a (kc x MR panel) * b (kc x NR panel), then the epilogue e if any */
static void micro(int64_t kc, const float *restrict a, const float *restrict b, float *restrict c, int64_t ldc,
                  int mr, int nr, int accumulate, const epilogue *e) {
    vf acc[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = v_zero();
    for (int64_t k = 0; k < kc; k++) {
        vf bv[NV];
        for (int v = 0; v < NV; v++) bv[v] = v_load(b + v * VL);
        for (int r = 0; r < MR; r++) {
            const vf ar = v_set1(a[r]);
            for (int v = 0; v < NV; v++) acc[r][v] = v_fma(ar, bv[v], acc[r][v]);
        }
        a += MR;
        b += NR;
    }
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        float *cr = c + r * ldc;
        const float *zr = e && e->z ? e->z + r * ldc : NULL;
        for (int v = 0; v < NV; v++) {
            const int n = nr - v * VL < VL ? nr - v * VL : VL;
            if (n <= 0) break;
            vf x = acc[r][v];
            if (n == VL) {
                if (accumulate) x = v_add(x, v_load(cr + v * VL));
                if (e) x = finish(x, e, r, zr ? zr + v * VL : NULL, n);
                v_store(cr + v * VL, x);
            } else {
                if (accumulate) x = v_add(x, v_load_n(cr + v * VL, n));
                if (e) x = finish(x, e, r, zr ? zr + v * VL : NULL, n);
                v_store_n(cr + v * VL, x, n);
            }
        }
    }
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
#if defined(__AVX512F__)
        /* NOTE: masked-off lanes are not read (no fault) and may lie outside the input: their addresses
         * are formed as integers, so that no out-of-range pointer is computed */
        if (s1 - s0 == 1) { /* one output row: one masked load per patch row (1.87 -> 1.67 ns a chunk) */
            const lanes *L = lan + s0 * khw;
            const uintptr_t base = (uintptr_t)src + (uintptr_t)seg[s0].base * 4;
            for (int64_t k = 0; k < kc; k++)
                _mm512_storeu_ps(d + k * NR,
                                 _mm512_maskz_loadu_ps(L[kr[k]].mask, (const void *)(base + (uintptr_t)kofs[k] * 4)));
            continue;
        }
        for (int64_t k = 0; k < kc; k++) {
            __m512 v = _mm512_setzero_ps();
            for (int32_t i = s0; i < s1; i++)
                v = _mm512_mask_loadu_ps(v, lan[i * khw + kr[k]].mask,
                                         (const void *)((uintptr_t)src + (uintptr_t)(seg[i].base + kofs[k]) * 4));
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

/* --- one call: the weights packed, then tasks (column blocks) -------------------------------------------- */

typedef struct {
    const float *x, *w, *b, *z, *params;
    float *y;
    int64_t C, H, W, M, OW, SH, SW, PT, DH, KH, G, act, cg, mg, K, ohw, wp, npm;
    int64_t kcb, nkb, nc, npan, nchunks, nblk, ntasks, maxseg, rows_in;
    const int64_t *koff;
    geometry geo;
    float *apack;
} job;

typedef struct {
    float *panels, *split;
    char *table;
} scratch;

/* the weights of every group as MR-row panels, K x MR each, k-major; rows past a group's end are zero */
static void pack_weights(const job *j) {
    for (int64_t gp = 0; gp < j->G * j->npm; gp++) { /* panel gp: rows (gp % npm)*MR.. of group gp / npm */
        const int64_t g = gp / j->npm, m0 = (gp - g * j->npm) * MR, rows = j->mg - m0 < MR ? j->mg - m0 : MR;
        const float *wp = j->w + (g * j->mg + m0) * j->K;
        float *a = j->apack + gp * j->K * MR;
        for (int64_t k = 0; k < j->K; k++, a += MR) {
            int64_t r = 0;
            for (; r < rows; r++) a[r] = wp[r * j->K + k];
            for (; r < MR; r++) a[r] = 0.0f;
        }
    }
}

static int thread_scratch(const job *j, scratch *s) {
    s->panels = grow(&tl_panels, j->kcb * j->nc * (int64_t)sizeof(float));
    s->table = grow(&tl_table, j->kcb * 12 + (j->nchunks + 1) * 4 +
                                   j->maxseg * ((int64_t)sizeof(segment) + j->geo.KH * j->geo.KW * (int64_t)sizeof(lanes)));
    s->split = j->SW > 1 ? grow(&tl_split, j->cg * j->rows_in * j->SW * j->wp * (int64_t)sizeof(float)) : NULL;
    return s->panels && s->table && (s->split || j->SW == 1) ? 0 : -1;
}

/* task t: output columns [j0, j1) of one image and group, all its output channels */
static void run_task(const job *j, int64_t t, const scratch *sc) {
    const int64_t ng = t / j->nblk, n = ng / j->G, g = ng - n * j->G, khw = j->geo.KH * j->geo.KW;
    const int64_t j0 = (t - ng * j->nblk) * j->nc, j1 = j0 + j->nc < j->ohw ? j0 + j->nc : j->ohw;
    int64_t *kofs = (int64_t *)sc->table;
    segment *seg = (segment *)(kofs + j->kcb);
    lanes *lan = (lanes *)(seg + j->maxseg);
    int32_t *kr = (int32_t *)(lan + j->maxseg * khw), *first = kr + j->kcb;
    segments(&j->geo, j0, j1, j->nchunks, first, seg, lan);

    const float *xg = j->x + (n * j->C + g * j->cg) * j->H * j->W, *src = xg;
    int64_t cstride = j->H * j->W, origin = 0;
    if (j->SW > 1) {
        /* split the input rows the task reads into the width stride's phases (a few rows more than its share
         * where tasks meet; in the task, so that it is shared out and stays in cache) */
        const int64_t oh0 = j0 / j->OW, oh1 = (j1 - 1) / j->OW;
        int64_t ir0 = oh0 * j->SH - j->PT, ir1 = oh1 * j->SH - j->PT + (j->KH - 1) * j->DH + 1;
        ir0 = ir0 < 0 ? 0 : ir0 > j->H ? j->H : ir0;
        ir1 = ir1 < ir0 ? ir0 : ir1 > j->H ? j->H : ir1;
        const int64_t rows = ir1 - ir0, sw = j->SW, wp = j->wp;
        for (int64_t c = 0; c < j->cg; c++)
            for (int64_t ih = ir0; ih < ir1; ih++) {
                const float *xr = xg + (c * j->H + ih) * j->W;
                float *d = sc->split + (c * rows + ih - ir0) * sw * wp;
                for (int64_t ph = 0; ph < sw; ph++, d += wp) {
                    int64_t u = 0;
                    for (; u * sw + ph < j->W; u++) d[u] = xr[u * sw + ph];
                    for (; u < wp; u++) d[u] = 0.0f;
                }
            }
        src = sc->split;
        cstride = rows * sw * wp;
        origin = ir0 * sw * wp;
    }

    float *yg = j->y + (n * j->M + g * j->mg) * j->ohw;
    const float *zg = j->z ? j->z + (n * j->M + g * j->mg) * j->ohw : NULL;
    for (int64_t kb = 0; kb < j->nkb; kb++) {
        const int64_t k0 = kb * j->kcb, kc = j->K - k0 < j->kcb ? j->K - k0 : j->kcb;
        const int fused = kb == j->nkb - 1 && (j->b || j->z || j->act);
        gather(&j->geo, src, cstride, origin, j->koff, k0, kc, j->nchunks, first, seg, lan, kofs, kr, sc->panels);
        for (int64_t ip = 0; ip < j->npm; ip++) {
            const float *a = j->apack + ((g * j->npm + ip) * j->K + k0) * MR;
            const int mr = (int)(j->mg - ip * MR < MR ? j->mg - ip * MR : MR);
            for (int64_t jp = 0; jp < j->npan && j0 + jp * NR < j1; jp++) {
                const int64_t jj = j0 + jp * NR, at = ip * MR * j->ohw + jj;
                const int nr = (int)(j1 - jj < NR ? j1 - jj : NR);
                const epilogue e = {j->b ? j->b + g * j->mg + ip * MR : NULL, zg ? zg + at : NULL, j->act,
                                    j->params[0], j->params[1], j->params[2]};
                micro(kc, a, sc->panels + jp * kc * NR, yg + at, j->ohw, mr, nr, kb > 0, fused ? &e : NULL);
            }
        }
    }
}

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

int pliant_kernel(void **p, const int64_t *s) {
    job j;
    j.x = p[0], j.w = p[1], j.b = p[2], j.z = p[3], j.y = p[4], j.params = p[5];
    const int64_t N = s[S_N], KW = s[S_KW], OH = s[S_OH], DW = s[S_DW], PL = s[S_PL];
    j.C = s[S_C], j.H = s[S_H], j.W = s[S_W], j.M = s[S_M], j.OW = s[S_OW], j.SH = s[S_SH], j.SW = s[S_SW];
    j.PT = s[S_PT], j.DH = s[S_DH], j.KH = s[S_KH], j.G = s[S_GROUP], j.act = s[S_ACT];
    j.cg = j.C / j.G, j.mg = j.M / j.G, j.K = j.cg * j.KH * KW, j.ohw = OH * j.OW;
    j.wp = (j.W + j.SW - 1) / j.SW, j.npm = (j.mg + MR - 1) / MR;
    if (N == 0 || j.M == 0 || j.ohw == 0) return 0;
    const int64_t khw = j.KH * KW;

    /* K blocks of kcb rows; column blocks of nc (a multiple of NR) so a block's panels fit the budget */
    j.kcb = s[S_KBLOCK] < j.K ? s[S_KBLOCK] : j.K;
    if (j.kcb < 1) j.kcb = 1;
    j.nkb = j.K > 0 ? (j.K + j.kcb - 1) / j.kcb : 1;
    const int64_t all = (j.ohw + NR - 1) / NR * NR;
    j.nc = s[S_BLOCK] / j.kcb / NR * NR;
    j.nc = j.nc < NR ? NR : j.nc > all ? all : j.nc;
    int threads = 1;
#ifdef _OPENMP
    if ((double)N * (double)j.M * (double)j.K * (double)j.ohw >= (double)s[S_PARALLEL]) threads = omp_get_max_threads();
    if (threads > 1) { /* about 4 tasks per thread, so that a thread that wakes late still gets its share */
        const int64_t per_image = (4 * threads + N * j.G - 1) / (N * j.G);
        const int64_t nc = ((j.ohw + per_image - 1) / per_image + NR - 1) / NR * NR;
        if (nc < j.nc) j.nc = nc;
    }
#endif
    j.nblk = (j.ohw + j.nc - 1) / j.nc, j.ntasks = N * j.G * j.nblk;
    j.npan = j.nc / NR, j.nchunks = j.nc / CHUNK;
    j.maxseg = j.nchunks * (CHUNK / j.OW + 2 < CHUNK ? CHUNK / j.OW + 2 : CHUNK);
    j.rows_in = (j.nc + j.OW - 1) / j.OW * j.SH + (j.KH - 1) * j.DH + 1;
    if (j.rows_in > j.H) j.rows_in = j.H;

    /* shared: per window position the source offset and the output columns that read inside the row, then
     * the packed weights */
    const int64_t meta_n = (khw + 2 * KW + 7) / 8 * 8;
    char *shared = grow(&tl_shared, meta_n * 8 + j.G * j.npm * j.K * MR * (int64_t)sizeof(float));
    if (!shared) return -1;
    int64_t *koff = (int64_t *)shared, *owlo = koff + khw, *owhi = owlo + KW;
    j.apack = (float *)(shared + meta_n * 8);
    for (int64_t kw = 0; kw < KW; kw++) {
        const int64_t off = kw * DW - PL, sw = j.SW; /* iw = ow*SW + off */
        const int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw, hi = j.W - 1 - off < 0 ? 0 : (j.W - 1 - off) / sw + 1;
        owlo[kw] = lo > j.OW ? j.OW : lo;
        owhi[kw] = hi > j.OW ? j.OW : hi;
        const int64_t q = off >= 0 ? off / sw : -((-off + sw - 1) / sw), ph = off - q * sw;
        for (int64_t kh = 0; kh < j.KH; kh++) koff[kh * KW + kw] = (kh * j.DH * sw + ph) * j.wp + q;
    }
    j.koff = koff;
    const geometry geo = {j.H, j.W, j.OW, j.SH, j.PT, j.DH, j.KH, KW, j.SW, j.wp, owlo, owhi};
    j.geo = geo;

    if (threads <= 1) {
        scratch sc;
        if (thread_scratch(&j, &sc)) return -1;
        pack_weights(&j);
        for (int64_t t = 0; t < j.ntasks; t++) run_task(&j, t, &sc);
        return 0;
    }
#ifdef _OPENMP
    /* NOTE: no OpenMP barrier or worksharing loop: pliant's processes wait passively
     * (OMP_WAIT_POLICY=PASSIVE), where a thread that reaches a barrier first sleeps in the kernel and its
     * wake-up costs 30-50 us on this 2-vCPU guest (an empty parallel region: 30 us, against 0.7 us
     * spinning).  So the calling thread packs the weights while the others wake, tasks go to whoever
     * asks next (a thread that wakes late takes fewer), and the calling thread spins, not sleeps, until
     * the others are done, so the region's closing barrier finds everyone there. */
    int64_t next = 0;
    int ready = 0, done = 0, failed = 0;
#pragma omp parallel num_threads(threads)
    {
        scratch sc;
        const int bad = thread_scratch(&j, &sc);
        if (bad) __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
        if (omp_get_thread_num() == 0) {
            pack_weights(&j);
            __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
        } else {
            while (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) relax();
        }
        while (!bad) {
            const int64_t t = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
            if (t >= j.ntasks) break;
            run_task(&j, t, &sc);
        }
        __atomic_fetch_add(&done, 1, __ATOMIC_RELEASE);
        if (omp_get_thread_num() == 0)
            while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) < omp_get_num_threads()) relax();
    }
    return failed ? -1 : 0;
#else
    return 0;
#endif
}
