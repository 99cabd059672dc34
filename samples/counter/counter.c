/*
 * counter - the smallest useful durable object: one integer in storage.
 *
 *   GET  /       -> the current value
 *   POST /incr   -> adds 1, or the integer in the body (may be negative); the new value
 *   POST /reset  -> sets it to 0; the new value
 *
 * Values are decimal text without a newline (text/plain), stored under the key "count" as
 * decimal text.
 *
 * Each request is one event: its storage writes commit together, and only then does the
 * response leave the host, so a client that saw "5" knows 5 is durable.
 */
#include "dohost.h"

#define KEY DOHOST_LIT("count")

/* Reads the stored value; a missing key means 0. Returns 0 or a negative status. */
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

/* Stores the value and answers with it. */
static int store_and_reply(int64_t value)
{
    char text[DOHOST_I64_CHARS];
    size_t len = dohost_fmt_i64(text, value);
    int32_t st = dohost_kv_put(KEY, text, len);
    if (st < 0)
        return st; /* non-zero fails the event: 500, nothing written */
    return dohost_respond(200, DOHOST_TEXT_PLAIN, text, len);
}

static int get(void)
{
    int64_t value;
    char text[DOHOST_I64_CHARS];
    int32_t st = load(&value);
    if (st < 0)
        return st;
    return dohost_respond(200, DOHOST_TEXT_PLAIN, text, dohost_fmt_i64(text, value));
}

static int incr(const dohost_request *req)
{
    int64_t value, delta = 1;
    int32_t st = load(&value);
    if (st < 0)
        return st;
    if (req->body_len > 0 && !dohost_parse_i64(req->body, req->body_len, &delta))
        return dohost_respond_text(400, "body must be an integer\n");
    if (__builtin_add_overflow(value, delta, &value))
        return dohost_respond_text(400, "counter would overflow\n");
    return store_and_reply(value);
}

/* 405 with the Allow header HTTP asks for. */
static int method_not_allowed(const char *allow)
{
    dohost_header allow_header = {.name = "allow", .value = allow};
    const char *text = "method not allowed\n";
    dohost_response r = {.status = 405,
                         .content_type = DOHOST_TEXT_PLAIN,
                         .headers = &allow_header,
                         .header_count = 1,
                         .body = text,
                         .body_len = dohost_strlen(text)};
    return dohost_respond_with(&r);
}

int on_fetch(const dohost_request *req)
{
    if (dohost_path_is(req, "/"))
        return dohost_method_is(req, "GET") ? get() : method_not_allowed("GET");
    if (dohost_path_is(req, "/incr"))
        return dohost_method_is(req, "POST") ? incr(req) : method_not_allowed("POST");
    if (dohost_path_is(req, "/reset"))
        return dohost_method_is(req, "POST") ? store_and_reply(0) : method_not_allowed("POST");
    return dohost_respond_text(404, "not found\n");
}
