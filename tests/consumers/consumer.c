/* A downstream C program built against the installed libqnoise with pkg-config alone. */
#include <stdio.h>
#include <string.h>

#include <qnoise/qnoise.h>

int main(void)
{
    qn_context *ctx = NULL;
    const float x[2] = {0.9f, 0.1f}, c[4] = {0.0f, 0.0f, 1.0f, 0.0f};
    uint32_t code = 99;
    float d = -1.0f;
    qn_status st;
    if (strcmp(qn_version(), QN_VERSION_STRING) != 0) {
        fprintf(stderr, "header %s but library %s\n", QN_VERSION_STRING, qn_version());
        return 1;
    }
    st = qn_context_create(&ctx);
    if (st != QN_OK) {
        fprintf(stderr, "qn_context_create: %s\n", qn_status_str(st));
        return 1;
    }
    st = qn_nearest_l2(ctx, x, 1, 2, 2, c, 2, &code, &d);
    qn_context_destroy(ctx);
    if (st != QN_OK || code != 1 || d < 0.0199f || d > 0.0201f) {
        fprintf(stderr, "qn_nearest_l2: %s code %u dist %g\n", qn_status_str(st), code, (double)d);
        return 1;
    }
    printf("C consumer OK: libqnoise %s, block word %08x\n", qn_version(), qn_rng_block_u32(1, 2, 3, 4));
    return 0;
}
