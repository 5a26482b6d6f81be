/* edge from C: classify one u8 RGB image (raw [H, W, 3] bytes) with an edge model file and
 * print the top-5 as edge-bench does; optionally write the logits (raw little-endian f32).
 *   cc -O2 -I edge-capi/include main.c target/debug/libedge_capi.a -lm -lpthread -ldl
 *   ./a.out atto.cnx astronaut_u8_hwc_224x224x3.bin [logits.bin]
 * edge allocates nothing: this program owns the file buffer (aligned), the handle, the arena
 * and the logits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge.h"

static unsigned char *read_file(const char *path, size_t *len, size_t align) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return NULL; }
    long n = -1;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "%s: not a regular file (cannot find its size)\n", path);
        fclose(f);
        return NULL;
    }
    /* aligned_alloc wants a multiple of the alignment. */
    size_t cap = ((size_t)n + align - 1) / align * align;
    unsigned char *buf = aligned_alloc(align, cap ? cap : align);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "%s: read failed\n", path); fclose(f); free(buf); return NULL; }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s MODEL.cnx IMAGE_u8_hwc.bin [LOGITS_OUT.bin]\n", argv[0]); return 2; }
    size_t model_len, image_len;
    /* The model file must start on a 16-byte boundary; 64 keeps every tensor cache-aligned. */
    unsigned char *file = read_file(argv[1], &model_len, 64);
    unsigned char *image = read_file(argv[2], &image_len, 16);
    if (!file || !image) return 2;

    EdgeModel model = {0};
    EdgeError err;
    if (edge_model_parse(file, model_len, &model, &err) != EDGE_STATUS_OK) {
        fprintf(stderr, "%s: %s: %s\n", argv[1], edge_status_name(err.status), err.message);
        return 1;
    }
    EdgeModelInfo info;
    if (edge_model_info(&model, &info, &err) != EDGE_STATUS_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], err.message);
        return 1;
    }
    size_t arena_len = edge_model_arena_len(&model, 1);
    unsigned char *arena = malloc(arena_len);
    float *logits = malloc(info.num_classes * sizeof(float));
    if (!arena || !logits) { fprintf(stderr, "out of memory\n"); return 2; }
    printf("model   %s (%zu bytes): %s, input %zux%zu, %zu classes, arena %zu bytes\n", argv[1], model_len,
           info.int8 ? "int8" : "f32", info.input_h, info.input_w, info.num_classes, arena_len);
    EdgeStatus s = edge_run_u8_hwc(&model, image, image_len, arena, arena_len, logits, info.num_classes,
                                   EDGE_KERNELS_AUTO, &err);
    if (s != EDGE_STATUS_OK) {
        fprintf(stderr, "%s: %s: %s\n", argv[2], edge_status_name(s), err.message);
        return 1;
    }
    /* Top-5 by logit, ties broken by the lower class index, as edge-bench (finite logits: the
     * runtime refuses non-finite inputs and weights). */
    size_t top[5];
    size_t k = info.num_classes < 5 ? info.num_classes : 5;
    for (size_t r = 0; r < k; r++) {
        size_t best = (size_t)-1;
        for (size_t i = 0; i < info.num_classes; i++) {
            int taken = 0;
            for (size_t q = 0; q < r; q++) taken |= top[q] == i;
            if (!taken && (best == (size_t)-1 || logits[i] > logits[best])) best = i;
        }
        top[r] = best;
    }
    printf("top-5\n");
    for (size_t r = 0; r < k; r++) printf("  %zu. class %5zu  logit %+.6f\n", r + 1, top[r], logits[top[r]]);
    if (argc > 3) {
        FILE *o = fopen(argv[3], "wb");
        if (!o) { perror(argv[3]); return 2; }
        size_t wrote = fwrite(logits, sizeof(float), info.num_classes, o);
        if (fclose(o) != 0 || wrote != info.num_classes) { fprintf(stderr, "%s: write failed\n", argv[3]); return 2; }
    }
    free(arena); free(logits); free(image); free(file);
    return 0;
}
