/* pliant: TopK of float32 rows for a small k: each row's k best keys, best first, equal keys in ascending index
 * order (a stable sort's order, as the reference kernel's).
 *
 * One pass over the row keeps the k best so far in order; a key better than the kth is inserted where it
 * belongs (strictly better than those it passes, so an equal key stays after the earlier one).  O(n*k): for
 * the few keys a router or a sampler picks, against a sort of every row and NumPy's calls around it (a (4, 8)
 * router's TopK took 17 us in NumPy).
 *
 * Entry: int pliant_kernel(void **p, const int64_t *s)
 *   p: x (float[rows][n]), values (float[rows][k]), indices (int64[rows][k])
 *   s: rows, n, k (0 <= k <= n), largest (1: the largest keys, 0: the smallest)
 * Returns 0, or 1 at a NaN key (whose order the caller leaves to the reference kernel).
 */
#include <stdint.h>

int pliant_kernel(void **p, const int64_t *s) {
    const float *x = p[0];
    float *values = p[1];
    int64_t *indices = p[2];
    const int64_t rows = s[0], n = s[1], k = s[2], largest = s[3];
    if (k <= 0) return 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *vr = values + r * k;
        int64_t *ir = indices + r * k, count = 0;
        for (int64_t i = 0; i < n; i++) {
            const float v = xr[i];
            if (v != v) return 1;
            if (count == k && !(largest ? v > vr[k - 1] : v < vr[k - 1])) continue;
            int64_t j = count < k ? count++ : k - 1;
            for (; j > 0 && (largest ? v > vr[j - 1] : v < vr[j - 1]); j--) {
                vr[j] = vr[j - 1];
                ir[j] = ir[j - 1];
            }
            vr[j] = v;
            ir[j] = i;
        }
    }
    return 0;
}
