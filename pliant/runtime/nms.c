/* pliant: the greedy pass of NonMaxSuppression for one (batch, class), on float32 box corners.
 *
 * The candidates come sorted (by descending score, stable) from the caller; taking
 * one suppresses every later candidate whose IoU with it exceeds the threshold.
 * The IoU is computed with the reference kernel's float32 arithmetic, operation by
 * operation (no contraction into FMAs), so every decision is the reference's; the
 * caller sends boxes with NaNs to the reference instead (C's comparisons and
 * NumPy's minimum/maximum differ on NaN).
 *
 * Entry: int pliant_kernel(void **p, const int64_t *s)
 *   p: y1, x1, y2, x2, area (float[boxes]), threshold (float[1]), cand (int64[n]), chosen (int64[n]), alive (uint8[n])
 *   s: n (candidates), limit (max boxes to keep)
 * Returns how many were chosen (written to chosen[0..]).
 */
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif

int pliant_kernel(void **p, const int64_t *s) {
    const float *y1 = p[0], *x1 = p[1], *y2 = p[2], *x2 = p[3], *area = p[4];
    const float t = *(const float *)p[5];
    const int64_t *cand = p[6];
    int64_t *chosen = p[7];
    uint8_t *alive = p[8];
    const int64_t n = s[0], limit = s[1];
    int64_t count = 0;
    memset(alive, 1, (size_t)n);
    for (int64_t k = 0; k < n; k++) {
        if (!alive[k]) continue;
        const int64_t i = cand[k];
        chosen[count++] = i;
        if (count >= limit) break;
        const float ay1 = y1[i], ax1 = x1[i], ay2 = y2[i], ax2 = x2[i], ai = area[i];
        for (int64_t q = k + 1; q < n; q++) {
            if (!alive[q]) continue;
            const int64_t j = cand[q];
            float h = (ay2 < y2[j] ? ay2 : y2[j]) - (ay1 > y1[j] ? ay1 : y1[j]);
            float w = (ax2 < x2[j] ? ax2 : x2[j]) - (ax1 > x1[j] ? ax1 : x1[j]);
            h = h > 0.0f ? h : 0.0f;
            w = w > 0.0f ? w : 0.0f;
            const float inter = h * w;
            const float sum = ai + area[j];
            const float uni = sum - inter;
            const float iou = (inter > 0.0f && ai > 0.0f && area[j] > 0.0f && uni > 0.0f) ? inter / uni : 0.0f;
            if (iou > t) alive[q] = 0;
        }
    }
    return (int)count;
}
