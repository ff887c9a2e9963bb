/* Copyright 2025 The tflm-patch Authors. Licensed under the Apache License 2.0.
 *
 * insn_count: a QEMU TCG plugin that counts the guest instructions executed
 * between two marker functions of the guest program.
 *
 *   qemu-system-arm ... -plugin ./libinsn_count.so,begin=0xADDR,end=0xADDR[,out=FILE]
 *
 * Every executed instruction adds 1 to a 64-bit counter (an inline add that
 * QEMU emits in front of each translated instruction: exact, no helper call).
 * When the first instruction of the function at `begin` executes, the counter
 * is sampled; when the one at `end` executes, the difference is printed as
 *
 *   window=K insns=N
 *
 * (K = 0, 1, ... for each begin/end pair). Begin and end are sampled at the
 * same point of an instruction, so N counts exactly the instructions from the
 * begin marker's first instruction up to, not including, the end marker's
 * first instruction: the work between the two calls plus the few instructions
 * of the begin marker's body and the two call sequences. At exit it prints
 * `total_insns=N` (everything the guest executed). Lines go to `out` (a file,
 * appended and flushed at once, so a guest that faults later loses nothing),
 * or to stderr when `out` is not given.
 *
 * QEMU does not install qemu-plugin.h on Debian, so the few declarations used
 * here are written out below, as in QEMU 7.2's include/qemu/qemu-plugin.h
 * (plugin API version 1; the loader rejects versions above the one it
 * implements). Build: gcc -shared -fPIC -O2 -o libinsn_count.so insn_count.c
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the subset of QEMU 7.2's plugin API used (ABI: plugin version 1) ---- */
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
#define QEMU_PLUGIN_VERSION 1

typedef uint64_t qemu_plugin_id_t;

typedef struct qemu_info_t {
  const char *target_name;
  struct {
    int min;
    int cur;
  } version;
  bool system_emulation;
  union {
    struct {
      int smp_vcpus;
      int max_vcpus;
    } system;
  };
} qemu_info_t;

struct qemu_plugin_tb;
struct qemu_plugin_insn;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op,
                                                void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
/* ------------------------------------------------------------------------- */

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* The boards we run (mps2-an386) have one vCPU, so one counter is exact. */
static uint64_t g_insns;
static uint64_t g_begin_at;
static bool g_in_window;
static unsigned g_windows;
static uint64_t g_begin_addr = UINT64_MAX, g_end_addr = UINT64_MAX;
static FILE *g_out;

enum { kBegin = 1, kEnd = 2 };

static void emit(const char *line) {
  if (g_out != NULL) {
    fputs(line, g_out);
    fflush(g_out);
  } else {
    fputs(line, stderr);
  }
}

static void on_marker(unsigned int vcpu_index, void *userdata) {
  (void)vcpu_index;
  if ((uintptr_t)userdata == kBegin) {
    g_begin_at = g_insns;
    g_in_window = true;
  } else if (g_in_window) {
    char line[96];
    snprintf(line, sizeof line, "window=%u insns=%" PRIu64 "\n", g_windows++, g_insns - g_begin_at);
    emit(line);
    g_in_window = false;
  }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  const size_t n = qemu_plugin_tb_n_insns(tb);
  for (size_t i = 0; i < n; ++i) {
    struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &g_insns, 1);
    const uint64_t pc = qemu_plugin_insn_vaddr(insn);
    if (pc == g_begin_addr || pc == g_end_addr) {
      qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS,
                                             (void *)(uintptr_t)(pc == g_begin_addr ? kBegin : kEnd));
    }
  }
}

static void on_plugin_exit(qemu_plugin_id_t id, void *userdata) {
  (void)id;
  (void)userdata;
  char line[64];
  snprintf(line, sizeof line, "total_insns=%" PRIu64 "\n", g_insns);
  emit(line);
  if (g_out != NULL) fclose(g_out);
  g_out = NULL;
}

static bool parse_address(const char *text, uint64_t *out) {
  char *end = NULL;
  const unsigned long long value = strtoull(text, &end, 0);
  if (end == text || *end != '\0') return false;
  *out = value & ~1ull; /* Thumb symbols have bit 0 set; instruction addresses do not. */
  return true;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    const char *arg = argv[i];
    bool ok = true;
    if (strncmp(arg, "begin=", 6) == 0) {
      ok = parse_address(arg + 6, &g_begin_addr);
    } else if (strncmp(arg, "end=", 4) == 0) {
      ok = parse_address(arg + 4, &g_end_addr);
    } else if (strncmp(arg, "out=", 4) == 0) {
      g_out = fopen(arg + 4, "a");
      ok = g_out != NULL;
    } else {
      ok = false;
    }
    if (!ok) {
      fprintf(stderr, "insn_count: bad argument '%s' (expected begin=ADDR, end=ADDR, out=FILE)\n", arg);
      return -1;
    }
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
  return 0;
}
