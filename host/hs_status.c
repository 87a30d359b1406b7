/* hs_status: error message formatting. No global state: messages live in the
 * caller's hs_err. */
#include "headsweep/hs_status.h"

#include <stdarg.h>
#include <string.h>

hs_status hs_err_set(hs_err *err, hs_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

hs_status hs_err_prefix(hs_err *err, const char *fmt, ...) {
    if (!err) return HS_OK;
    char head[HS_ERR_MSG_MAX], old[HS_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* head + ": " + old, truncated to the buffer */
    size_t hl = strnlen(head, sizeof head), cap = sizeof err->msg - 1;
    if (hl > cap) hl = cap;
    memcpy(err->msg, head, hl);
    size_t pos = hl;
    for (const char *p = ": "; *p && pos < cap; p++) err->msg[pos++] = *p;
    size_t ol = strnlen(old, sizeof old);
    if (ol > cap - pos) ol = cap - pos;
    memcpy(err->msg + pos, old, ol);
    err->msg[pos + ol] = '\0';
    return err->code;
}

const char *hs_status_str(hs_status s) {
    switch (s) {
    case HS_OK: return "ok";
    case HS_ERR_IO: return "I/O error";
    case HS_ERR_FORMAT: return "format error";
    case HS_ERR_UNSUPPORTED: return "unsupported";
    case HS_ERR_INVALID_ARG: return "invalid argument";
    case HS_ERR_SHAPE: return "shape mismatch";
    case HS_ERR_MISSING: return "missing";
    case HS_ERR_OOM: return "out of memory";
    case HS_ERR_DEVICE: return "device error";
    case HS_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}
