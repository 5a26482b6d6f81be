/* The ceiling of 2-thread scaling on this host: the same AVX2 FMA loop (10 independent
 * accumulators, no memory traffic) on one thread, then on two at once. A VM's two vCPUs that
 * are SMT siblings, or share a core with another guest, show it here first.
 * Build and run: gcc -O2 -mavx2 -mfma -pthread benches/host/fma_scaling.c -o fma && ./fma */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *work(void *out) {
    __m256 a[10];
    for (int i = 0; i < 10; i++) a[i] = _mm256_set1_ps(i * 0.001f);
    const __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(0.0001f);
    for (long k = 0; k < 200000000L; k++)
        for (int i = 0; i < 10; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    float s = 0;
    for (int i = 0; i < 10; i++) {
        float t[8];
        _mm256_storeu_ps(t, a[i]);
        s += t[0];
    }
    *(float *)out = s; /* keeps the loop alive */
    return 0;
}

int main(void) {
    float r[2];
    double t = now();
    work(&r[0]);
    double one = now() - t;
    pthread_t th[2];
    t = now();
    for (int i = 0; i < 2; i++) pthread_create(&th[i], 0, work, &r[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], 0);
    double two = now() - t;
    printf("1 thread %.2f s, 2 threads (the same work each) %.2f s: %.2fx the 1-thread rate\n", one,
           two, 2 * one / two);
    return 0;
}
