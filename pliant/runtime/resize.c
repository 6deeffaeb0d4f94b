/* pliant: separable 2-tap (linear) resize of the last two axes of a float32 tensor.
 *
 * Every output row oh reads input rows rh[2*oh], rh[2*oh+1] with weights wh[2*oh], wh[2*oh+1];
 * every output column ow reads columns rw[2*ow], rw[2*ow+1] with weights ww[...].  The caller
 * computes the taps as ONNX Resize defines them (coordinate transform, clamping at the
 * edges), so this file knows nothing of the modes.
 *
 * Entry: int pliant_kernel(void **p, const int64_t *s)
 *   p: x (P x H x W), y (P x OH x OW), rh (int64[2*OH]), wh (float[2*OH]), rw (int64[2*OW]), ww (float[2*OW])
 *   s: P, H, W, OH, OW
 */
#include <stdint.h>

int pliant_kernel(void **p, const int64_t *s) {
    const float *x = p[0], *wh = p[3], *ww = p[5];
    float *y = p[1];
    const int64_t *rh = p[2], *rw = p[4];
    const int64_t P = s[0], H = s[1], W = s[2], OH = s[3], OW = s[4];
    for (int64_t q = 0; q < P; q++) {
        const float *xp = x + q * H * W;
        float *yp = y + q * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *r0 = xp + rh[2 * oh] * W, *r1 = xp + rh[2 * oh + 1] * W;
            const float a0 = wh[2 * oh], a1 = wh[2 * oh + 1];
            float *d = yp + oh * OW;
            for (int64_t ow = 0; ow < OW; ow++) {
                const int64_t c0 = rw[2 * ow], c1 = rw[2 * ow + 1];
                const float b0 = ww[2 * ow], b1 = ww[2 * ow + 1];
                d[ow] = a0 * (b0 * r0[c0] + b1 * r0[c1]) + a1 * (b0 * r1[c0] + b1 * r1[c1]);
            }
        }
    }
    return 0;
}
