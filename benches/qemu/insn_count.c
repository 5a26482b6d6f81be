/* Counts executed guest instructions (QEMU TCG plugin, API v1 declared by hand: Debian's QEMU 7.2
 * ships no qemu-plugin.h). Every translated block adds its instruction count each time it
 * executes; at exit the total goes to stderr as "insn_count: N".
 * With the argument per_thread=on (`-plugin insn_count.so,per_thread=on`) the count is also kept
 * per vCPU, which under qemu-user is per guest thread (numbered in creation order, the main
 * thread 0), and printed as "insn_count vcpu K: N" lines: the busiest thread of a parallel run is
 * its critical path. That mode calls back per block instead of adding inline (slower).
 * With per_thread=exit, each guest thread's count is printed when the thread exits, as
 * "insn_count exit K: N" (K counts exits from 0), and its slot starts again from zero: qemu-user
 * reuses a finished thread's vCPU index, so this is the form for programs that start threads
 * one set after another (edge-bench --critical-path, benches/qemu/threads.sh).
 * Instruction count is not time (no memory or pipeline effects): report it next to MACs. */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index,
                                              int64_t num, uint64_t a1, uint64_t a2, uint64_t a3,
                                              uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7,
                                              uint64_t a8);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_VCPUS 256
static uint64_t count;
/* Each slot is written only by its own vCPU's thread; read once, at exit. */
static uint64_t per_vcpu[MAX_VCPUS];
static unsigned int vcpus_seen;
static int per_thread;

static void on_exec(unsigned int vcpu, void *n) {
    if (vcpu < MAX_VCPUS) {
        per_vcpu[vcpu] += (uint64_t)(uintptr_t)n;
        if (vcpu >= __atomic_load_n(&vcpus_seen, __ATOMIC_RELAXED)) {
            __atomic_store_n(&vcpus_seen, vcpu + 1, __ATOMIC_RELAXED);
        }
    }
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (per_thread) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
    } else {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &count, n);
    }
}

static unsigned int exits;

/* per_thread=exit: a thread's count, printed as it enters the exit syscall (before the kernel
 * wakes whoever joins it, so a program that joins a set of threads before starting the next sees
 * the sets in order); its slot is reused from zero. 93 is aarch64 Linux's `exit` (this mode is
 * for aarch64 guests). */
static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8) {
    (void)id, (void)a1, (void)a2, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
    if (num == 93 && vcpu < MAX_VCPUS) {
        unsigned int k = __atomic_fetch_add(&exits, 1, __ATOMIC_RELAXED);
        /* The main thread's running count too: it waits in a join while its threads exit. */
        fprintf(stderr, "insn_count exit %u: %" PRIu64 " main %" PRIu64 "\n", k, per_vcpu[vcpu],
                __atomic_load_n(&per_vcpu[0], __ATOMIC_RELAXED));
        __atomic_fetch_add(&count, per_vcpu[vcpu], __ATOMIC_RELAXED);
        per_vcpu[vcpu] = 0;
    }
}

static void on_exit(qemu_plugin_id_t id, void *p) {
    (void)id;
    (void)p;
    if (per_thread) {
        /* Exited threads (per_thread=exit) are in `count` already. */
        if (per_thread == 1) {
            count = 0;
        }
        for (unsigned int v = 0; v < vcpus_seen && v < MAX_VCPUS; v++) {
            count += per_vcpu[v];
            fprintf(stderr, "insn_count vcpu %u: %" PRIu64 "\n", v, per_vcpu[v]);
        }
    }
    fprintf(stderr, "insn_count: %" PRIu64 "\n", count);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info, int argc,
                                                               char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "per_thread=on") == 0) {
            per_thread = 1;
        }
        if (strcmp(argv[i], "per_thread=exit") == 0) {
            per_thread = 2;
            qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
