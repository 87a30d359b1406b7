/* hs_status: error codes and the caller-owned error message buffer.
 * Every public function returns an hs_status and, on failure, fills the
 * hs_err the caller passed (may be NULL). There is no global error state. */
#ifndef HS_STATUS_H
#define HS_STATUS_H

#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    HS_OK = 0,
    HS_ERR_IO,          /* open/read/mmap/write failed */
    HS_ERR_FORMAT,      /* malformed file: bad magic, offsets, JSON, ... */
    HS_ERR_UNSUPPORTED, /* valid input we do not handle (dtype, architecture) */
    HS_ERR_INVALID_ARG, /* caller passed something inconsistent */
    HS_ERR_SHAPE,       /* tensor shape contradicts the configuration */
    HS_ERR_MISSING,     /* required tensor or key absent */
    HS_ERR_OOM,         /* allocation failed */
    HS_ERR_DEVICE,      /* CUDA / cuBLAS failure or no device */
    HS_ERR_INTERRUPTED, /* stopped on request (a signal); completed work was kept */
} hs_status;

#define HS_ERR_MSG_MAX 1024

typedef struct {
    hs_status code;
    char msg[HS_ERR_MSG_MAX];
} hs_err;

/* Records code and a printf-style message in err (if non-NULL); returns code. */
hs_status hs_err_set(hs_err *err, hs_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prepends "prefix: " to an existing message (adds context on the way up). */
hs_status hs_err_prefix(hs_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Static name of a status code, e.g. "format error". */
const char *hs_status_str(hs_status s);

/* Internal invariant (never user input): abort with file:line and expression. */
#define HS_ASSERT(x)                                                              \
    do {                                                                          \
        if (!(x)) {                                                               \
            fprintf(stderr, "%s:%d: HS_ASSERT(%s) failed\n", __FILE__, __LINE__, #x); \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* netCDF-style cleanup: record status and jump to the function's exit label. */
#define HS_CHECK(expr)                 \
    do {                               \
        st = (expr);                   \
        if (st != HS_OK) goto exit;    \
    } while (0)

#define HS_FAIL(err, code, ...)                        \
    do {                                               \
        st = hs_err_set((err), (code), __VA_ARGS__);   \
        goto exit;                                     \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
