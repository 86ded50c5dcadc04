/* Shift the wall clock that Python code reads by CHAOS_CLOCK_SHIFT seconds, for the chaos tests.
 *
 * libfaketime 0.9.10 (Debian 12) cannot shift a Python 3.11 process here: faking the monotonic clock makes
 * every timed wait hang (sem_clockwait is not wrapped), and FAKETIME_DONT_FAKE_MONOTONIC=1 makes time.sleep
 * fail with EINVAL. Shifting CLOCK_REALTIME for all of the process stalls librdkafka instead (it waits on
 * condition variables against deadlines from more than one clock, which a real step would make wait too,
 * but by the step's length, once). So every caller but librdkafka sees the shifted wall clock: Python
 * (time.time(), datetime.now()) and Bytewax's Rust runtime, which compare times with each other; the
 * monotonic clock is left alone, as a host's clock step leaves it.
 * Build: cc -shared -fPIC -O2 -o clock_shift.so clock_shift.c -ldl; use with LD_PRELOAD.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long shift_seconds(void) {
    static long shift = 0;
    static int ready = 0;
    if (!ready) {
        const char *text = getenv("CHAOS_CLOCK_SHIFT");
        shift = text ? strtol(text, NULL, 10) : 0;
        ready = 1;
    }
    return shift;
}

/* Whether `caller` lies in librdkafka (the confluent-kafka wheel bundles it as librdkafka-<hash>.so.1). */
static int from_librdkafka(void *caller) {
    Dl_info info;
    return dladdr(caller, &info) && info.dli_fname && strstr(info.dli_fname, "librdkafka");
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *) = NULL;
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int result = real(clock, ts);
    if (result == 0 && clock == CLOCK_REALTIME && !from_librdkafka(__builtin_return_address(0))) {
        ts->tv_sec += shift_seconds();
    }
    return result;
}
