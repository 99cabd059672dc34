/*
 * dohost.h - C guest SDK for dohost, guest ABI v1 (abi/README.md).
 *
 * Write one function and link this SDK:
 *
 *     #include "dohost.h"
 *     int on_fetch(const dohost_request *req) {
 *         return dohost_respond_text(200, "hello\n");
 *     }
 *
 * The SDK defines the exports `dohost_abi_v1` and `dohost_fetch`; `dohost_fetch` decodes
 * the request and calls your `on_fetch`. Return 0 when the event succeeded (its storage
 * writes are committed), anything else to fail it (writes rolled back, caller gets 500).
 * The `dohost_*` helpers return a negative ABI status on failure, so `return
 * dohost_respond(...)` fails the event exactly when the response could not be set.
 *
 * Optional exports, each enabled by one macro at file scope in your code:
 *     DOHOST_EXPORT_INIT(fn)    int fn(void);                          -> dohost_init
 *     DOHOST_EXPORT_ALARM(fn)   int fn(const dohost_alarm_info *info); -> dohost_alarm
 *
 * Memory: everything the SDK hands you (the request, values read from storage, list
 * entries, error texts) and everything from dohost_alloc() lives in a per-event arena
 * that is reset when the next event starts. Keep state that must outlive an event in
 * static variables (or in storage). Values from dohost_kv_get() and dohost_query_get()
 * are followed by a NUL byte not counted in their length, so text can be used as a C
 * string; the request body, list entries and dohost_kv_get_many() values are not.
 *
 * Build (freestanding, no libc; see README.md):
 *     python -m ziglang cc --target=wasm32-freestanding -O2 -nostdlib -Wl,--no-entry \
 *         -I guest-sdk/c app.c guest-sdk/c/dohost.c guest-sdk/c/cbor.c -o app.wasm
 * (plus guest-sdk/c/json.c when you use json.h, the optional JSON helper).
 * The SDK also builds with --target=wasm32-wasi -mexec-model=reactor (wasi-libc's malloc
 * then backs the arena and libc provides memcpy & co).
 */
#ifndef DOHOST_H
#define DOHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cbor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Status codes (abi/README.md section 6) ------------------------------------------ */

#define DOHOST_OK 0
#define DOHOST_ERR_INTERNAL (-1)
#define DOHOST_ERR_BAD_POINTER (-2)
#define DOHOST_ERR_NOT_FOUND (-3)
#define DOHOST_ERR_KEY_TOO_LARGE (-4)
#define DOHOST_ERR_VALUE_TOO_LARGE (-5)
#define DOHOST_ERR_TOO_MANY_KEYS (-6)
#define DOHOST_ERR_QUOTA_EXCEEDED (-7)
#define DOHOST_ERR_BAD_ENCODING (-8)
#define DOHOST_ERR_NOT_SUPPORTED (-9)
#define DOHOST_ERR_NO_RESULT (-10)
#define DOHOST_ERR_INVALID_ARGUMENT (-11)
#define DOHOST_ERR_STORAGE_ERROR (-12)
#define DOHOST_ERR_BUFFER_TOO_SMALL (-13)
#define DOHOST_ERR_LIMIT_EXCEEDED (-14)
/* Not an ABI code: the SDK could not get guest memory (memory.grow failed) or could not
 * decode what the host sent. Never returned by the host. */
#define DOHOST_ERR_NO_MEMORY (-100)
#define DOHOST_ERR_SDK_DECODE (-101)

/* The stable name of a status ("not_found"), "ok" for >= 0, "unknown" otherwise. */
const char *dohost_status_name(int32_t status);

/* ---- Bytes and memory ------------------------------------------------------------------ */

typedef struct {
    const uint8_t *ptr; /* NULL means "absent" where an API says so */
    size_t len;
} dohost_bytes;

typedef struct {
    dohost_bytes key;
    dohost_bytes value;
} dohost_entry;

/* Expands to `"literal", length` for APIs taking (ptr, len):
 *     dohost_kv_get(DOHOST_LIT("count"), &v) */
#define DOHOST_LIT(s) (s), (sizeof(s) - 1)

/* Allocates from the event arena (8-byte aligned); NULL when memory cannot grow.
 * Freed all at once when the next event starts: there is no free(). */
void *dohost_alloc(size_t n);

/* ---- Requests (abi/request.cddl) ------------------------------------------------------- */

typedef struct {
    /* NUL-terminated; the lengths are given because a value may contain NUL bytes. */
    const char *name; /* lower case */
    const char *value;
    size_t name_len;
    size_t value_len;
} dohost_header;

typedef struct {
    const char *method; /* "GET", "POST", ... NUL-terminated, as are path and query */
    const char *path;   /* begins with "/", percent-encoding kept */
    const char *query;  /* raw, without "?"; "" when absent */
    size_t method_len, path_len, query_len;
    const dohost_header *headers; /* in arrival order, duplicates kept */
    size_t header_count;
    const uint8_t *body; /* not NUL-terminated */
    size_t body_len;
} dohost_request;

/* Your handler. Required: the SDK's dohost_fetch calls it. */
int on_fetch(const dohost_request *req);

bool dohost_method_is(const dohost_request *req, const char *method);
bool dohost_path_is(const dohost_request *req, const char *path);
/* The first header with this name (case-insensitive), NULL when absent. */
const char *dohost_header_get(const dohost_request *req, const char *name);
/* The first query parameter `name`, percent-decoded ('+' is a space) into the arena.
 * Returns false when absent; a present but empty parameter ("?a" or "?a=") is true, len 0. */
bool dohost_query_get(const dohost_request *req, const char *name, dohost_bytes *value);
/* The first query parameter `name` as a decimal integer; `dflt` when it is absent or not
 * an integer (dohost_parse_i64). */
int64_t dohost_query_int(const dohost_request *req, const char *name, int64_t dflt);
/* Percent-decodes (s, n) into the arena ('+' becomes a space). False when out of memory. */
bool dohost_percent_decode(const char *s, size_t n, dohost_bytes *out);

/* ---- Responses (abi/response.cddl) ----------------------------------------------------- */

typedef struct {
    int status;               /* 100..599; 0 means 200 */
    const char *content_type; /* NULL: no content-type header */
    /* Extra headers. In these, a name_len/value_len of 0 means "NUL-terminated", so
     * { .name = "allow", .value = "GET" } works. */
    const dohost_header *headers;
    size_t header_count;
    const void *body;
    size_t body_len;
} dohost_response;

/* Sets the event's response (the last call wins). Returns 0 or a negative status. */
int32_t dohost_respond_with(const dohost_response *resp);
int32_t dohost_respond(int status, const char *content_type, const void *body, size_t len);
#define DOHOST_TEXT_PLAIN "text/plain; charset=utf-8"
/* A DOHOST_TEXT_PLAIN response with a NUL-terminated body. */
int32_t dohost_respond_text(int status, const char *text);

/* ---- Storage (abi/README.md section 5, abi/kv.cddl, abi/list.cddl) --------------------- */

/* Reads a value into the arena. Returns its length (>= 0) and sets *value, or
 * DOHOST_ERR_NOT_FOUND, or another negative status. */
int32_t dohost_kv_get(const void *key, size_t key_len, dohost_bytes *value);
int32_t dohost_kv_put(const void *key, size_t key_len, const void *val, size_t val_len);
/* Returns 1 when the key existed, 0 when not, or a negative status. */
int32_t dohost_kv_delete(const void *key, size_t key_len);
/* values[i] receives the value of keys[i], or {NULL, 0} when that key does not exist.
 * Returns the number of distinct keys found, or a negative status. At most 128 keys. */
int32_t dohost_kv_get_many(const dohost_bytes *keys, size_t n, dohost_bytes *values);
/* All or nothing. At most 128 entries. */
int32_t dohost_kv_put_many(const dohost_entry *entries, size_t n);
/* Returns how many of the keys existed. At most 128 keys. */
int32_t dohost_kv_delete_many(const dohost_bytes *keys, size_t n);
/* Deletes every key of the object. */
int32_t dohost_kv_delete_all(void);

/* Options of a listing. A NULL pointer means "not set"; a non-NULL pointer with length 0
 * is the empty key (so `.end = ""` lists nothing: no key sorts before the empty key). */
typedef struct {
    const void *prefix;
    size_t prefix_len;
    const void *start; /* inclusive */
    size_t start_len;
    const void *end; /* exclusive */
    size_t end_len;
    bool reverse;
    uint32_t limit; /* 0 = no limit */
} dohost_list_options;

/* Walks a listing page by page: the SDK follows `more` with new kv_list calls. */
typedef struct {
    dohost_list_options opts; /* copy; start/end advance as pages are read */
    cbor_dec page;            /* position in the current page's entries */
    size_t left;              /* entries not yet returned from the current page */
    bool more;                /* the host has more entries after this page */
    uint32_t returned;        /* entries returned so far (for the limit) */
    uint32_t pages;           /* kv_list calls made so far */
    dohost_bytes last_key;    /* last key returned, to continue after it */
} dohost_list_iter;

/* Makes the first kv_list call. opts may be NULL (everything). Returns 0 or a status. */
int32_t dohost_list_begin(dohost_list_iter *it, const dohost_list_options *opts);
/* Returns 1 and sets key/value (arena memory, valid for the event), 0 at the end, or a
 * negative status. */
int32_t dohost_list_next(dohost_list_iter *it, dohost_bytes *key, dohost_bytes *value);

/* ---- Errors ------------------------------------------------------------------------------ */

typedef struct {
    int32_t code;
    const char *name;    /* e.g. "key_too_large"; NUL-terminated, in the arena */
    const char *message; /* a sentence from the host */
} dohost_error;

/* The detail of the last failed import of this event (abi/error.cddl). Returns 0, or
 * DOHOST_ERR_NO_RESULT when no import failed, or another negative status. */
int32_t dohost_last_error(dohost_error *err);

/* ---- Alarms (abi/README.md section 5, "Alarms") -------------------------------------------
 * One alarm per object, in ms since the Unix epoch. Changes are part of the event's
 * transaction: a failed event rolls them back with its writes. When it fires, the
 * DOHOST_EXPORT_ALARM handler runs; inside it dohost_alarm_get() reports no alarm until
 * the handler sets a new one. */

/* Sets (replaces) the alarm; a time in the past fires at once. 0, or
 * DOHOST_ERR_INVALID_ARGUMENT for a negative time, or another negative status. */
int32_t dohost_alarm_set(int64_t time_ms);
/* 1 and *out = the alarm's time, 0 when none is set (*out untouched), or a negative
 * status. out may be NULL to ask only whether an alarm is set. */
int32_t dohost_alarm_get(int64_t *out);
/* Deletes the alarm (no error when none is set). 0 or a negative status. */
int32_t dohost_alarm_delete(void);

/* ---- Utilities ------------------------------------------------------------------------- */

enum { DOHOST_LOG_DEBUG = 0, DOHOST_LOG_INFO = 1, DOHOST_LOG_WARN = 2, DOHOST_LOG_ERROR = 3 };

/* No formatting: pass finished text. Lines above 16 KiB are truncated by the host. */
int32_t dohost_log(int level, const char *text);
int32_t dohost_log_bytes(int level, const void *text, size_t len);
int32_t dohost_log_debug(const char *text);
int32_t dohost_log_info(const char *text);
int32_t dohost_log_warn(const char *text);
int32_t dohost_log_error(const char *text);

/* Wall clock, milliseconds since the Unix epoch. */
int64_t dohost_now_ms(void);
/* Fills buf with cryptographically secure bytes (any length; split into host calls). */
int32_t dohost_random(void *buf, size_t len);

/* Small text helpers, since there is no libc. */
#define DOHOST_I64_CHARS 21 /* "-9223372036854775808" plus NUL */
/* Writes v in decimal plus a NUL into buf (DOHOST_I64_CHARS bytes); returns the length. */
size_t dohost_fmt_i64(char *buf, int64_t v);
/* Parses an optional sign and decimal digits, allowing surrounding spaces, tabs, CR and
 * LF. False on anything else, on no digits, or on overflow. */
bool dohost_parse_i64(const void *text, size_t len, int64_t *out);
size_t dohost_strlen(const char *s);
bool dohost_streq(const char *a, const char *b);

/* ---- Optional exports -------------------------------------------------------------------- */

/* Alarm info (abi/alarm.cddl). */
typedef struct {
    int64_t scheduled_ms;
    uint64_t retry_count;
    bool is_retry;
} dohost_alarm_info;

/* Used by the macros below; not for direct use. */
void dohost__begin_event(void);
int32_t dohost__read_alarm(int32_t info_len, dohost_alarm_info *info);
/* Used by the SDK's other files (sql.c): calls `call` with a scratch buffer in the arena
 * and applies the output-buffer rule; *out is the result in the arena, NUL-terminated. */
typedef int32_t (*dohost__output_fn)(const void *ctx, void *buf, size_t cap);
int32_t dohost__output(dohost__output_fn call, const void *ctx, dohost_bytes *out);
/* The value of the first header named `name` (ASCII case-insensitive), or NULL. Shared by
 * request and call-response lookups. */
const char *dohost__header_find(const dohost_header *headers, size_t count, const char *name);

/* Exports `dohost_init` calling `int fn(void)` once per activation, before its first
 * event. Storage works there; its writes join the first event's transaction. */
#define DOHOST_EXPORT_INIT(fn)                                                           \
    __attribute__((export_name("dohost_init"))) int32_t dohost__export_init(void)        \
    {                                                                                    \
        dohost__begin_event();                                                           \
        return (fn)();                                                                   \
    }

/* Exports `dohost_alarm` calling `int fn(const dohost_alarm_info *)`. Non-zero retries. */
#define DOHOST_EXPORT_ALARM(fn)                                                          \
    __attribute__((export_name("dohost_alarm"))) int32_t dohost__export_alarm(           \
        int32_t info_len)                                                                \
    {                                                                                    \
        dohost_alarm_info info;                                                          \
        dohost__begin_event();                                                           \
        int32_t st = dohost__read_alarm(info_len, &info);                                \
        return st != 0 ? st : (fn)(&info);                                               \
    }

/* ---- Raw imports (abi/README.md section 5) ----------------------------------------------
 * The helpers above wrap these; they are declared for tests and special cases. Pointers
 * are guest memory offsets, lengths are bytes. */
#define DOHOST_IMPORT(name) __attribute__((import_module("dohost"), import_name(#name)))

DOHOST_IMPORT(input_read) int32_t dohost_raw_input_read(void *out, size_t cap);
DOHOST_IMPORT(response_set) int32_t dohost_raw_response_set(const void *p, size_t len);
DOHOST_IMPORT(result_read) int32_t dohost_raw_result_read(void *out, size_t cap);
DOHOST_IMPORT(last_error) int32_t dohost_raw_last_error(void *out, size_t cap);
DOHOST_IMPORT(kv_get)
int32_t dohost_raw_kv_get(const void *key, size_t key_len, void *out, size_t cap);
DOHOST_IMPORT(kv_put)
int32_t dohost_raw_kv_put(const void *key, size_t key_len, const void *val, size_t val_len);
DOHOST_IMPORT(kv_delete) int32_t dohost_raw_kv_delete(const void *key, size_t key_len);
DOHOST_IMPORT(kv_get_many)
int32_t dohost_raw_kv_get_many(const void *keys, size_t len, void *out, size_t cap);
DOHOST_IMPORT(kv_put_many) int32_t dohost_raw_kv_put_many(const void *entries, size_t len);
DOHOST_IMPORT(kv_delete_many) int32_t dohost_raw_kv_delete_many(const void *keys, size_t len);
DOHOST_IMPORT(kv_list)
int32_t dohost_raw_kv_list(const void *opts, size_t len, void *out, size_t cap);
DOHOST_IMPORT(kv_delete_all) int32_t dohost_raw_kv_delete_all(void);
DOHOST_IMPORT(log) int32_t dohost_raw_log(int32_t level, const void *p, size_t len);
DOHOST_IMPORT(now_ms) int64_t dohost_raw_now_ms(void);
DOHOST_IMPORT(random_fill) int32_t dohost_raw_random_fill(void *p, size_t len);
DOHOST_IMPORT(alarm_set) int32_t dohost_raw_alarm_set(int64_t time_ms);
/* Writes the time as a little-endian i64 (8 bytes) at out and returns 1, or returns 0. */
DOHOST_IMPORT(alarm_get) int32_t dohost_raw_alarm_get(void *out);
DOHOST_IMPORT(alarm_delete) int32_t dohost_raw_alarm_delete(void);

#ifdef __cplusplus
}
#endif

#endif /* DOHOST_H */
