/*
 * {{name}} - a durable object made by `dohost init`. One integer in storage:
 *
 *   GET  /       -> the count
 *   POST /incr   -> adds STEP and answers the new count (and logs a line)
 *
 * Each request is one event: its writes commit together before the response leaves.
 * The SDK is the C SDK of the installed dohost (`dohost sdk c` prints where; its
 * README documents every call).
 */
#include "dohost.h"

#define KEY DOHOST_LIT("count")
#define STEP 1

/* Reads the stored count; a missing key means 0. Returns 0 or a negative status. */
static int32_t load(int64_t *value)
{
    dohost_bytes v;
    int32_t st = dohost_kv_get(KEY, &v);
    *value = 0;
    if (st == DOHOST_ERR_NOT_FOUND)
        return 0;
    if (st < 0)
        return st;
    return dohost_parse_i64(v.ptr, v.len, value) ? 0 : DOHOST_ERR_BAD_ENCODING;
}

int on_fetch(const dohost_request *req)
{
    int64_t value;
    char text[DOHOST_I64_CHARS];
    int32_t st = load(&value);
    if (st < 0)
        return st; /* non-zero fails the event: 500, nothing written */
    if (dohost_path_is(req, "/") && dohost_method_is(req, "GET"))
        return dohost_respond(200, DOHOST_TEXT_PLAIN, text, dohost_fmt_i64(text, value));
    if (dohost_path_is(req, "/incr") && dohost_method_is(req, "POST")) {
        value += STEP;
        size_t len = dohost_fmt_i64(text, value);
        if ((st = dohost_kv_put(KEY, text, len)) < 0)
            return st;
        dohost_log_info("incremented");
        return dohost_respond(200, DOHOST_TEXT_PLAIN, text, len);
    }
    return dohost_respond_text(404, "not found\n");
}
