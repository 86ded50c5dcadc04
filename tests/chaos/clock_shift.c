/* Shift the wall clock that Python code reads by CHAOS_CLOCK_SHIFT seconds, for the chaos tests.
 *
 * libfaketime 0.9.10 (Debian 12) cannot shift a Python 3.11 process here: faking the monotonic clock makes
 * every timed wait hang (sem_clockwait is not wrapped), and FAKETIME_DONT_FAKE_MONOTONIC=1 makes time.sleep
 * fail with EINVAL. Shifting CLOCK_REALTIME for the whole process stalls librdkafka instead (it waits on
 * condition variables against deadlines from more than one clock). So only calls made by the Python
 * interpreter itself are shifted: time.time(), datetime.now() and so the product's Python code see a host
 * clock that jumped; the C libraries' own waits and the monotonic clock are left as they are.
 * Build: cc -shared -fPIC -O2 -o clock_shift.so clock_shift.c -ldl; use with LD_PRELOAD.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
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

/* Whether `caller` lies in the object (the executable or libpython) that defines the interpreter. */
static int from_python(void *caller) {
    static void *python_base = NULL;
    Dl_info info;
    if (!python_base) {
        void *symbol = dlsym(RTLD_DEFAULT, "Py_Initialize");
        if (!symbol || !dladdr(symbol, &info)) return 0;
        python_base = info.dli_fbase;
    }
    return dladdr(caller, &info) && info.dli_fbase == python_base;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *) = NULL;
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int result = real(clock, ts);
    if (result == 0 && clock == CLOCK_REALTIME && from_python(__builtin_return_address(0))) {
        ts->tv_sec += shift_seconds();
    }
    return result;
}
