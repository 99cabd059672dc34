/*
 * common.h - small helpers shared by pipeline.c and run.c (static, so each module keeps
 * only what it uses).
 */
#ifndef PIPELINE_COMMON_H
#define PIPELINE_COMMON_H

#include "call.h"
#include "dohost.h"
#include "json.h"

#define MAX_STAGES 16
#define MAX_STAGE_NAME 32
#define NUM_DIGITS 10 /* run numbers in keys, zero-padded so they sort numerically */

/* ---- Text ------------------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} text;

static inline void put_bytes(text *t, const void *p, size_t n)
{
    if (t->oom || n == 0)
        return;
    if (n + 1 > t->cap - t->len) { /* keep room for a NUL */
        size_t cap = (t->cap + n + 1) * 2;
        char *b = dohost_alloc(cap);
        if (!b) {
            t->oom = true;
            return;
        }
        if (t->len)
            __builtin_memcpy(b, t->buf, t->len);
        t->buf = b;
        t->cap = cap;
    }
    __builtin_memcpy(t->buf + t->len, p, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

static inline void put_str(text *t, const char *s)
{
    put_bytes(t, s, dohost_strlen(s));
}

static inline void put_int(text *t, int64_t v)
{
    char digits[DOHOST_I64_CHARS];
    put_bytes(t, digits, dohost_fmt_i64(digits, v));
}

/* "<prefix><n, zero-padded to NUM_DIGITS><suffix>" */
static inline const char *num_key(const char *prefix, int64_t n, const char *suffix)
{
    char digits[NUM_DIGITS];
    text t = {0};
    for (int i = NUM_DIGITS - 1; i >= 0; i--, n /= 10)
        digits[i] = (char)('0' + n % 10);
    put_str(&t, prefix);
    put_bytes(&t, digits, NUM_DIGITS);
    put_str(&t, suffix);
    return t.oom ? NULL : t.buf;
}

/* ---- Storage ---------------------------------------------------------------------------- */

static inline int64_t get_int(const char *key, int64_t dflt)
{
    dohost_bytes v;
    int64_t n;
    if (dohost_kv_get(key, dohost_strlen(key), &v) >= 0 && dohost_parse_i64(v.ptr, v.len, &n))
        return n;
    return dflt;
}

static inline int32_t put_int_key(const char *key, int64_t v)
{
    char digits[DOHOST_I64_CHARS];
    return dohost_kv_put(key, dohost_strlen(key), digits, dohost_fmt_i64(digits, v));
}

/* The value as a NUL-terminated string (kv_get values are), or dflt. */
static inline const char *get_str(const char *key, const char *dflt)
{
    dohost_bytes v;
    return dohost_kv_get(key, dohost_strlen(key), &v) >= 0 ? (const char *)v.ptr : dflt;
}

static inline int32_t put_str_key(const char *key, const char *value)
{
    return dohost_kv_put(key, dohost_strlen(key), value, dohost_strlen(value));
}

/* ---- Requests and responses ------------------------------------------------------------ */

static inline int reply_error(int status, const char *message)
{
    dohost_json w;
    dohost_json_init_arena(&w);
    dohost_json_object(&w);
    dohost_json_key(&w, "error");
    dohost_json_cstr(&w, message);
    dohost_json_end(&w);
    return dohost_respond_json(status, &w);
}

/* path == "<prefix><decimal n><suffix>" with n >= 1 */
static inline bool match_num(const char *path, const char *prefix, const char *suffix,
                             int64_t *n)
{
    size_t pl = dohost_strlen(prefix), sl = dohost_strlen(suffix), len = dohost_strlen(path);
    if (len <= pl + sl || __builtin_memcmp(path, prefix, pl) != 0 ||
        !dohost_streq(path + len - sl, suffix))
        return false;
    for (size_t i = pl; i < len - sl; i++)
        if (path[i] < '0' || path[i] > '9')
            return false;
    return len - sl - pl <= 9 && dohost_parse_i64(path + pl, len - sl - pl, n) && *n >= 1;
}

/* A comma-separated stage list: each name 1..MAX_STAGE_NAME of [a-z0-9_-]; at most
 * MAX_STAGES. Returns the count (>= 1) and the names' spans, or 0 when invalid. */
static inline size_t split_stages(const char *s, dohost_bytes *out)
{
    size_t n = 0;
    const char *p = s;
    for (;;) {
        const char *start = p;
        while (*p && *p != ',') {
            char c = *p;
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
                return 0;
            p++;
        }
        size_t len = (size_t)(p - start);
        if (len == 0 || len > MAX_STAGE_NAME || n == MAX_STAGES)
            return 0;
        out[n++] = (dohost_bytes){(const uint8_t *)start, len};
        if (!*p)
            return n;
        p++;
    }
}

#endif /* PIPELINE_COMMON_H */
