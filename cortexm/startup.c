/* Copyright 2025 The tflm-patch Authors. Licensed under the Apache License 2.0.
 *
 * Cortex-M4 startup for QEMU mps2-an386 with newlib + librdimon (semihosting).
 *
 * Linked with `--specs=rdimon.specs -nostartfiles`: librdimon provides the
 * semihosting system calls (printf reaches QEMU's stdout, exit() ends QEMU
 * with main's return value), and this file does crt0's job: enable the FPU,
 * copy .data, zero .bss, open the semihosting handles, run the C++
 * constructors, call main() and exit with its value. rdimon's own crt0 is not
 * used: it sets SP from SYS_HEAPINFO, which QEMU guesses. Every fault or
 * unexpected exception prints its number and exits with 128 + number, so a
 * broken program never hangs the caller. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(int argc, char **argv);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);

/* __libc_init_array() calls _init(); crti.o (dropped by -nostartfiles) would
 * provide it. Constructors come through .init_array, so nothing to do. */
void _init(void) {}
void _fini(void) {}

/* C++ registers destructors of static objects with __cxa_atexit(..., &__dso_handle);
 * crtbegin.o (also dropped) would define it. */
void *__dso_handle = 0;

void Reset_Handler(void) __attribute__((noreturn));
void Default_Handler(void) __attribute__((noreturn));

void Reset_Handler(void) {
#if defined(__ARM_FP)
  /* CPACR: full access to CP10/CP11 (the FPU) before any FP instruction. */
  *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20);
  __asm volatile("dsb\n\tisb" ::: "memory");
#endif
  uint32_t *src = &_sidata, *dst = &_sdata;
  while (dst < &_edata) *dst++ = *src++;
  for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;

  initialise_monitor_handles();
  __libc_init_array();
  exit(main(0, NULL));
}

void Default_Handler(void) {
  uint32_t ipsr;
  __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
  fprintf(stderr, "*** unhandled exception %lu (3 = HardFault)\n", (unsigned long)(ipsr & 0x1ff));
  exit(128 + (int)(ipsr & 0x1ff));
}

/* Vector table: initial MSP, reset, 14 system exceptions, 32 IRQs (unused). */
__attribute__((section(".isr_vector"), used))
const void *const g_vectors[16 + 32] = {
    &_estack,        /* 0: initial MSP */
    Reset_Handler,   /* 1: reset */
    Default_Handler, /* 2: NMI */
    Default_Handler, /* 3: HardFault */
    Default_Handler, /* 4: MemManage */
    Default_Handler, /* 5: BusFault */
    Default_Handler, /* 6: UsageFault */
    0, 0, 0, 0,      /* 7-10: reserved */
    Default_Handler, /* 11: SVCall */
    Default_Handler, /* 12: DebugMonitor */
    0,               /* 13: reserved */
    Default_Handler, /* 14: PendSV */
    Default_Handler, /* 15: SysTick */
    [16 ... 47] = Default_Handler,
};
