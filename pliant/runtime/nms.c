/* pliant: the greedy pass of NonMaxSuppression for one (batch, class), on float32 box corners.
 *
 * The candidates come sorted (by descending score, stable) from the caller; taking
 * one suppresses every later candidate whose IoU with it exceeds the threshold.
 * The IoU is computed with the reference kernel's float32 arithmetic, operation by
 * operation (no contraction into FMAs), so every decision is the reference's; the
 * caller sends boxes with NaNs to the reference instead (C's comparisons and
 * NumPy's minimum/maximum differ on NaN).
 *
 * Entry: int pliant_kernel(void **p, const int64_t *s), the whole op in one call
 *   p: boxes (float[batches][boxes][4]), scores (float[batches][classes][boxes]), thresholds (float[2]: IoU,
 *      score, the second read where s[4] is 1), chosen (int64[batches][classes][boxes]), nchosen
 *      (int64[batches][classes]), alive (uint8[boxes]), scratch (float[10 * boxes]), order (int64[2 * boxes]),
 *      selected (int64[batches * classes * boxes][3]), total (int64[1])
 *   s: batches, classes, boxes, limit (max boxes to keep per class, >= 1), whether there is a score threshold,
 *      center_point_box
 * A box's corners are (y1, x1, y2, x2) = the min and max of its two corners (center_point_box 0), or
 * centre -/+ half the size (1), and its area (y2 - y1) * (x2 - x1), in float32 as the reference computes
 * them.  A class's candidates are its boxes scoring above the threshold (all of them without one), by
 * descending score, equal scores in index order (a stable sort; without a threshold NaN scores come last).
 * Writes each class's chosen boxes to the start of its row of chosen, their number to nchosen, and all of them
 * as the op's (batch, class, box) rows to selected, their number to total; returns 0.
 */
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif

/* b's score comes strictly before a's: descending, NaN last (a stable sort takes a on ties) */
static inline int before(const float *sc, int64_t b, int64_t a) {
    const float x = sc[b], y = sc[a];
    return x > y || (y != y && x == x);
}

/* idx[0..n) sorted stably by descending score, tmp n more; a merge sort, runs of 8 by insertion first */
static void sort_desc(const float *sc, int64_t *idx, int64_t *tmp, int64_t n) {
    for (int64_t lo = 0; lo < n; lo += 8) {
        const int64_t hi = lo + 8 < n ? lo + 8 : n;
        for (int64_t i = lo + 1; i < hi; i++) {
            const int64_t v = idx[i];
            int64_t j = i;
            for (; j > lo && before(sc, v, idx[j - 1]); j--) idx[j] = idx[j - 1];
            idx[j] = v;
        }
    }
    int64_t *src = idx, *dst = tmp;
    for (int64_t w = 8; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            const int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) dst[k++] = before(sc, src[j], src[i]) ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        int64_t *t = src;
        src = dst, dst = t;
    }
    if (src != idx) memcpy(idx, src, (size_t)n * sizeof(int64_t));
}

/* the candidates' corners and areas are first gathered in their order (g: 5 rows of n floats), so that the
 * inner loop reads contiguous rows and vectorises; it computes every later candidate's IoU, suppressed or
 * not (the same float operations, each exactly rounded, as the scalar form) */
static int64_t greedy(const float *y1, const float *x1, const float *y2, const float *x2, const float *area,
                      float t, const int64_t *cand, int64_t n, int64_t limit, int64_t *chosen, uint8_t *alive,
                      float *g) {
    float *restrict gy1 = g, *restrict gx1 = g + n, *restrict gy2 = g + 2 * n, *restrict gx2 = g + 3 * n;
    float *restrict ga = g + 4 * n;
    for (int64_t q = 0; q < n; q++) {
        const int64_t j = cand[q];
        gy1[q] = y1[j], gx1[q] = x1[j], gy2[q] = y2[j], gx2[q] = x2[j], ga[q] = area[j];
    }
    int64_t count = 0;
    memset(alive, 1, (size_t)n);
    for (int64_t k = 0; k < n; k++) {
        if (!alive[k]) continue;
        chosen[count++] = cand[k];
        if (count >= limit) break;
        const float ay1 = gy1[k], ax1 = gx1[k], ay2 = gy2[k], ax2 = gx2[k], ai = ga[k];
        uint8_t *restrict live = alive;
        for (int64_t q = k + 1; q < n; q++) {
            float h = (ay2 < gy2[q] ? ay2 : gy2[q]) - (ay1 > gy1[q] ? ay1 : gy1[q]);
            float w = (ax2 < gx2[q] ? ax2 : gx2[q]) - (ax1 > gx1[q] ? ax1 : gx1[q]);
            h = h > 0.0f ? h : 0.0f;
            w = w > 0.0f ? w : 0.0f;
            const float inter = h * w;
            const float sum = ai + ga[q];
            const float uni = sum - inter;
            const float iou = (inter > 0.0f && ai > 0.0f && ga[q] > 0.0f && uni > 0.0f) ? inter / uni : 0.0f;
            live[q] = (uint8_t)(live[q] & !(iou > t));
        }
    }
    return count;
}

int pliant_kernel(void **p, const int64_t *s) {
    const float *boxes = p[0], *scores = p[1], *th = p[2];
    int64_t *chosen = p[3], *nchosen = p[4];
    uint8_t *alive = p[5];
    float *scratch = p[6];
    int64_t *order = p[7];
    const int64_t batches = s[0], classes = s[1], nb = s[2], limit = s[3], threshold = s[4], center = s[5];
    const float t = th[0], st = th[1];
    float *y1 = scratch + 5 * nb, *x1 = y1 + nb, *y2 = x1 + nb, *x2 = y2 + nb, *area = x2 + nb;
    for (int64_t b = 0; b < batches; b++) {
        const float *bx = boxes + b * nb * 4;
        for (int64_t q = 0; q < nb; q++) {
            const float a0 = bx[4 * q], a1 = bx[4 * q + 1], a2 = bx[4 * q + 2], a3 = bx[4 * q + 3];
            if (center) { /* (xc, yc, w, h) */
                y1[q] = a1 - a3 / 2.0f, x1[q] = a0 - a2 / 2.0f, y2[q] = a1 + a3 / 2.0f, x2[q] = a0 + a2 / 2.0f;
            } else {
                y1[q] = a0 < a2 ? a0 : a2, x1[q] = a1 < a3 ? a1 : a3, y2[q] = a0 < a2 ? a2 : a0, x2[q] = a1 < a3 ? a3 : a1;
            }
            area[q] = (y2[q] - y1[q]) * (x2[q] - x1[q]);
        }
        for (int64_t c = 0; c < classes; c++) {
            const float *sc = scores + (b * classes + c) * nb;
            int64_t n = 0;
            for (int64_t q = 0; q < nb; q++)
                if (!threshold || sc[q] > st) order[n++] = q;
            sort_desc(sc, order, order + nb, n);
            nchosen[b * classes + c] = n > 0 ? greedy(y1, x1, y2, x2, area, t, order, n, limit < n ? limit : n,
                                                      chosen + (b * classes + c) * nb, alive, scratch) : 0;
        }
    }
    int64_t *sel = p[8], total = 0;
    for (int64_t bc = 0; bc < batches * classes; bc++)
        for (int64_t i = 0; i < nchosen[bc]; i++, total++) {
            sel[3 * total] = bc / classes, sel[3 * total + 1] = bc % classes, sel[3 * total + 2] = chosen[bc * nb + i];
        }
    ((int64_t *)p[9])[0] = total;
    return 0;
}
