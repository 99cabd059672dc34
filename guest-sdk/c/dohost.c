/*
 * dohost.c - C guest SDK for dohost, guest ABI v1. See dohost.h for the API and
 * abi/README.md for the contract it implements.
 */
#include "dohost.h"

#define PAGE_BYTES 65536u
#define SCRATCH_MIN 4096u         /* free arena space offered to an import that returns bytes */
#define RANDOM_MAX_CALL 65536u    /* random_fill accepts at most this much per call */
#define ARENA_CHUNK (64u * 1024u) /* wasi build: arena chunk size */

/* ---- The few libc functions the compiler may call (freestanding build only) ---------------
 * Clang emits calls to memcpy/memset/memmove/memcmp for struct copies and large
 * initialisers even with -ffreestanding. They are weak so that an application (or a libc)
 * can bring its own; `no_builtin` stops clang from turning the loops back into calls to
 * these same functions. */
#ifndef __wasi__
#define LIBC_FN __attribute__((weak, no_builtin))

LIBC_FN void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
#ifdef __wasm_bulk_memory_opt__
    __builtin_memcpy(dst, src, n); /* lowers to the memory.copy instruction */
#else
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--)
        *d++ = *s++;
#endif
    return dst;
}

LIBC_FN void *memmove(void *dst, const void *src, size_t n)
{
#ifdef __wasm_bulk_memory_opt__
    __builtin_memmove(dst, src, n); /* memory.copy handles overlap */
#else
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
#endif
    return dst;
}

LIBC_FN void *memset(void *dst, int c, size_t n)
{
#ifdef __wasm_bulk_memory_opt__
    __builtin_memset(dst, c, n); /* memory.fill */
#else
    uint8_t *d = dst;
    while (n--)
        *d++ = (uint8_t)c;
#endif
    return dst;
}

LIBC_FN int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}
#endif

size_t dohost_strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

bool dohost_streq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static bool bytes_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || __builtin_memcmp(a, b, alen) == 0);
}

/* ---- Event arena --------------------------------------------------------------------------
 * One bump region, reset when an event starts, so a long-lived activation reuses the same
 * memory instead of leaking. arena_tail() exposes the free space at the top so that imports
 * can write their output there directly (no copy); arena_commit() keeps what was written. */
#ifndef __wasi__
/* Freestanding: the arena is everything from __heap_base to the end of memory, grown with
 * memory.grow. (So the application must not call memory.grow itself and use the pages.) */
extern unsigned char __heap_base;
static uintptr_t arena_base, arena_top;

static uint64_t memory_bytes(void)
{
    return (uint64_t)__builtin_wasm_memory_size(0) * PAGE_BYTES;
}

static void arena_reset(void)
{
    if (arena_base == 0)
        arena_base = ((uintptr_t)&__heap_base + 7) & ~(uintptr_t)7;
    arena_top = arena_base;
}

/* noinline: it is called from many places, and code size matters more than this call. */
__attribute__((noinline)) static uint8_t *arena_tail(size_t min, size_t *cap)
{
    if (arena_base == 0)
        arena_reset();
    uint64_t end = (uint64_t)arena_top + min;
    uint64_t have = memory_bytes();
    if (end > have) {
        uint64_t pages = (end - have + PAGE_BYTES - 1) / PAGE_BYTES;
        if (pages > SIZE_MAX || __builtin_wasm_memory_grow(0, (size_t)pages) == SIZE_MAX)
            return NULL;
        have = memory_bytes();
    }
    uint64_t avail = have - arena_top;
    *cap = avail > INT32_MAX ? INT32_MAX : (size_t)avail; /* i32 lengths must stay positive */
    return (uint8_t *)arena_top;
}

static void arena_commit(size_t n)
{
    arena_top += n;
}

static void arena_align(void)
{
    if (arena_base == 0)
        arena_reset();
    arena_top = (arena_top + 7) & ~(uintptr_t)7;
}
#else
/* WASI: wasi-libc's malloc owns memory.grow, so the arena is a list of malloc'd chunks.
 * A reset frees all but the first chunk. */
#include <stdlib.h>

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    size_t pad; /* keeps the data after the header 8-byte aligned (header: 16 bytes) */
} chunk;

static chunk *first_chunk, *cur_chunk;

static uint8_t *chunk_data(chunk *c)
{
    return (uint8_t *)(c + 1);
}

static void arena_reset(void)
{
    if (!first_chunk)
        return;
    for (chunk *c = first_chunk->next, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    first_chunk->next = NULL;
    first_chunk->used = 0;
    cur_chunk = first_chunk;
}

static uint8_t *arena_tail(size_t min, size_t *cap)
{
    if (!cur_chunk || cur_chunk->cap - cur_chunk->used < min) {
        size_t size = min > ARENA_CHUNK ? min : ARENA_CHUNK;
        if (size > INT32_MAX)
            return NULL;
        size = (size + 7) & ~(size_t)7;
        chunk *c = malloc(sizeof(chunk) + size);
        if (!c)
            return NULL;
        c->next = NULL;
        c->cap = size;
        c->used = 0;
        if (cur_chunk)
            cur_chunk->next = c;
        else
            first_chunk = c;
        cur_chunk = c;
    }
    *cap = cur_chunk->cap - cur_chunk->used;
    return chunk_data(cur_chunk) + cur_chunk->used;
}

static void arena_commit(size_t n)
{
    cur_chunk->used += n;
}

static void arena_align(void)
{
    if (cur_chunk) /* cap is a multiple of 8, so this stays within the chunk */
        cur_chunk->used = (cur_chunk->used + 7) & ~(size_t)7;
}
#endif

void *dohost_alloc(size_t n)
{
    size_t cap;
    arena_align();
    uint8_t *p = arena_tail(n, &cap);
    if (p)
        arena_commit(n);
    return p;
}

void dohost__begin_event(void)
{
    arena_reset();
}

static char *arena_str(const char *p, size_t n)
{
    char *s = dohost_alloc(n + 1);
    if (s) {
        if (n)
            __builtin_memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* ---- Output-buffer rule (abi/README.md section 2) ------------------------------------------
 * The free arena space is the scratch buffer: a result that fits is written there by the
 * host in one crossing and kept in place; a larger one is fetched with result_read into
 * space grown to its size. One byte is held back for a terminating NUL. */
static uint8_t *out_space(size_t min, size_t *cap)
{
    uint8_t *buf = arena_tail(min + 1, cap);
    if (buf)
        *cap -= 1;
    return buf;
}

__attribute__((noinline)) static int32_t take_output(int32_t n, uint8_t *buf, size_t cap,
                                                     dohost_bytes *out)
{
    if (n < 0)
        return n;
    size_t len = (size_t)n;
    if (len > cap) { /* nothing was written: the host keeps it as the pending result */
        buf = arena_tail(len + 1, &cap);
        if (!buf)
            return DOHOST_ERR_NO_MEMORY;
        int32_t st = dohost_raw_result_read(buf, len);
        if (st < 0)
            return st;
    }
    buf[len] = '\0';
    arena_commit(len + 1);
    out->ptr = buf;
    out->len = len;
    return n;
}

/* For the SDK's other files (sql.c): one import that produces bytes, under the rule above. */
int32_t dohost__output(dohost__output_fn call, const void *ctx, dohost_bytes *out)
{
    size_t cap;
    uint8_t *buf = out_space(SCRATCH_MIN, &cap);
    if (!buf)
        return DOHOST_ERR_NO_MEMORY;
    return take_output(call(ctx, buf, cap), buf, cap, out);
}

/* Encodes with `fn` into the arena: one pass to measure, one to write. */
typedef void (*encoder)(cbor_enc *e, const void *arg);

static const uint8_t *encode(encoder fn, const void *arg, size_t *len)
{
    cbor_enc e;
    cbor_enc_init(&e, NULL, 0);
    fn(&e, arg);
    size_t n = e.len;
    uint8_t *buf = dohost_alloc(n);
    if (!buf)
        return NULL;
    cbor_enc_init(&e, buf, n);
    fn(&e, arg);
    *len = n;
    return buf;
}

/* ---- Event input --------------------------------------------------------------------- */

static int32_t read_input(int32_t len_hint, dohost_bytes *in)
{
    size_t cap;
    uint8_t *buf = out_space(len_hint > 0 ? (size_t)len_hint : 0, &cap);
    if (!buf)
        return DOHOST_ERR_NO_MEMORY;
    return take_output(dohost_raw_input_read(buf, cap), buf, cap, in);
}

/* Reads a text string into a NUL-terminated arena copy. */
static bool get_text(cbor_dec *d, const char **out, size_t *len)
{
    const char *p;
    size_t n;
    if (!cbor_get_tstr(d, &p, &n))
        return false;
    *out = arena_str(p, n);
    *len = n;
    return *out != NULL;
}

static bool decode_headers(cbor_dec *d, dohost_request *req)
{
    size_t n;
    if (!cbor_get_array(d, &n))
        return false;
    dohost_header *hs = dohost_alloc(n * sizeof *hs); /* n is bounded by the input size */
    if (!hs)
        return false;
    for (size_t i = 0; i < n; i++) {
        size_t pair;
        if (!cbor_get_array(d, &pair) || pair != 2 ||
            !get_text(d, &hs[i].name, &hs[i].name_len) ||
            !get_text(d, &hs[i].value, &hs[i].value_len))
            return false;
    }
    req->headers = hs;
    req->header_count = n;
    return true;
}

static bool decode_request(dohost_bytes in, dohost_request *req)
{
    static const char empty[] = "";
    cbor_dec d;
    size_t n;
    *req = (dohost_request){.method = empty, .path = empty, .query = empty};
    cbor_dec_init(&d, in.ptr, in.len);
    if (!cbor_get_map(&d, &n))
        return false;
    for (size_t i = 0; i < n && !d.err; i++) {
        const char *k;
        size_t klen;
        if (!cbor_get_tstr(&d, &k, &klen))
            return false;
        if (cbor_str_eq(k, klen, "method"))
            get_text(&d, &req->method, &req->method_len);
        else if (cbor_str_eq(k, klen, "path"))
            get_text(&d, &req->path, &req->path_len);
        else if (cbor_str_eq(k, klen, "query"))
            get_text(&d, &req->query, &req->query_len);
        else if (cbor_str_eq(k, klen, "headers"))
            d.err |= !decode_headers(&d, req);
        else if (cbor_str_eq(k, klen, "body"))
            cbor_get_bstr(&d, &req->body, &req->body_len);
        else
            cbor_skip(&d); /* request.cddl: ignore keys we do not know */
    }
    return cbor_dec_done(&d) && req->method && req->path && req->query;
}

/* The ABI marker (abi/README.md section 1); never called. */
__attribute__((export_name("dohost_abi_v1"))) void dohost_abi_v1(void)
{
}

__attribute__((export_name("dohost_fetch"))) int32_t dohost_fetch(int32_t request_len)
{
    dohost_bytes in;
    dohost_request req;
    dohost__begin_event();
    int32_t st = read_input(request_len, &in);
    if (st < 0) {
        dohost_log_error("dohost sdk: input_read failed");
        return st;
    }
    if (!decode_request(in, &req)) {
        dohost_log_error("dohost sdk: could not decode the request");
        return DOHOST_ERR_SDK_DECODE;
    }
    return on_fetch(&req);
}

int32_t dohost__read_alarm(int32_t info_len, dohost_alarm_info *info)
{
    dohost_bytes in;
    cbor_dec d;
    size_t n;
    int32_t st = read_input(info_len, &in);
    if (st < 0)
        return st;
    *info = (dohost_alarm_info){0};
    cbor_dec_init(&d, in.ptr, in.len);
    cbor_get_map(&d, &n);
    for (size_t i = 0; i < n && !d.err; i++) {
        const char *k;
        size_t klen;
        cbor_get_tstr(&d, &k, &klen);
        if (d.err)
            break;
        if (cbor_str_eq(k, klen, "scheduled_ms"))
            cbor_get_int(&d, &info->scheduled_ms);
        else if (cbor_str_eq(k, klen, "retry_count"))
            cbor_get_uint(&d, &info->retry_count);
        else if (cbor_str_eq(k, klen, "is_retry"))
            cbor_get_bool(&d, &info->is_retry);
        else
            cbor_skip(&d);
    }
    return cbor_dec_done(&d) ? 0 : DOHOST_ERR_SDK_DECODE;
}

/* ---- Request helpers ----------------------------------------------------------------- */

bool dohost_method_is(const dohost_request *req, const char *method)
{
    return dohost_streq(req->method, method);
}

bool dohost_path_is(const dohost_request *req, const char *path)
{
    return dohost_streq(req->path, path);
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

const char *dohost__header_find(const dohost_header *headers, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++) {
        const dohost_header *h = &headers[i];
        size_t j = 0;
        while (j < h->name_len && name[j] && lower(name[j]) == lower(h->name[j]))
            j++;
        if (j == h->name_len && name[j] == '\0')
            return h->value;
    }
    return NULL;
}

const char *dohost_header_get(const dohost_request *req, const char *name)
{
    return dohost__header_find(req->headers, req->header_count, name);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool dohost_percent_decode(const char *s, size_t n, dohost_bytes *out)
{
    uint8_t *buf = dohost_alloc(n + 1); /* decoding never makes text longer */
    size_t len = 0;
    if (!buf)
        return false;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hex_digit(s[i + 1])) >= 0 &&
            (lo = hex_digit(s[i + 2])) >= 0) {
            buf[len++] = (uint8_t)(hi << 4 | lo);
            i += 2;
        } else {
            buf[len++] = s[i] == '+' ? ' ' : (uint8_t)s[i]; /* a stray '%' stays as is */
        }
    }
    buf[len] = '\0';
    out->ptr = buf;
    out->len = len;
    return true;
}

bool dohost_query_get(const dohost_request *req, const char *name, dohost_bytes *value)
{
    const char *q = req->query, *end = q + req->query_len;
    size_t name_len = dohost_strlen(name);
    while (q < end) {
        const char *amp = q, *eq;
        while (amp < end && *amp != '&')
            amp++;
        for (eq = q; eq < amp && *eq != '='; eq++)
            ;
        if (bytes_eq(q, (size_t)(eq - q), name, name_len)) {
            const char *v = eq < amp ? eq + 1 : amp;
            return dohost_percent_decode(v, (size_t)(amp - v), value);
        }
        if (amp == end)
            break;
        q = amp + 1;
    }
    return false;
}

int64_t dohost_query_int(const dohost_request *req, const char *name, int64_t dflt)
{
    dohost_bytes v;
    int64_t n;
    if (dohost_query_get(req, name, &v) && dohost_parse_i64(v.ptr, v.len, &n))
        return n;
    return dflt;
}

/* ---- Responses ----------------------------------------------------------------------- */

static size_t text_len(const char *s, size_t len)
{
    return len ? len : dohost_strlen(s);
}

static void encode_response(cbor_enc *e, const void *arg)
{
    const dohost_response *r = arg;
    cbor_put_map(e, 3);
    cbor_put_cstr(e, "status");
    cbor_put_int(e, r->status ? r->status : 200);
    cbor_put_cstr(e, "headers");
    cbor_put_array(e, r->header_count + (r->content_type ? 1 : 0));
    if (r->content_type) {
        cbor_put_array(e, 2);
        cbor_put_cstr(e, "content-type");
        cbor_put_cstr(e, r->content_type);
    }
    for (size_t i = 0; i < r->header_count; i++) {
        const dohost_header *h = &r->headers[i];
        cbor_put_array(e, 2);
        cbor_put_tstr(e, h->name, text_len(h->name, h->name_len));
        cbor_put_tstr(e, h->value, text_len(h->value, h->value_len));
    }
    cbor_put_cstr(e, "body");
    cbor_put_bstr(e, r->body, r->body_len);
}

int32_t dohost_respond_with(const dohost_response *resp)
{
    size_t len;
    const uint8_t *buf = encode(encode_response, resp, &len);
    if (!buf)
        return DOHOST_ERR_NO_MEMORY;
    return dohost_raw_response_set(buf, len);
}

int32_t dohost_respond(int status, const char *content_type, const void *body, size_t len)
{
    dohost_response r = {
        .status = status, .content_type = content_type, .body = body, .body_len = len};
    return dohost_respond_with(&r);
}

int32_t dohost_respond_text(int status, const char *text)
{
    return dohost_respond(status, DOHOST_TEXT_PLAIN, text, dohost_strlen(text));
}

/* ---- Storage ------------------------------------------------------------------------- */

int32_t dohost_kv_get(const void *key, size_t key_len, dohost_bytes *value)
{
    size_t cap;
    uint8_t *buf = out_space(SCRATCH_MIN, &cap);
    if (!buf)
        return DOHOST_ERR_NO_MEMORY;
    return take_output(dohost_raw_kv_get(key, key_len, buf, cap), buf, cap, value);
}

int32_t dohost_kv_put(const void *key, size_t key_len, const void *val, size_t val_len)
{
    return dohost_raw_kv_put(key, key_len, val, val_len);
}

int32_t dohost_kv_delete(const void *key, size_t key_len)
{
    return dohost_raw_kv_delete(key, key_len);
}

int32_t dohost_kv_delete_all(void)
{
    return dohost_raw_kv_delete_all();
}

typedef struct {
    const dohost_bytes *keys;
    size_t n;
} key_list;

static void encode_keys(cbor_enc *e, const void *arg) /* kv-keys */
{
    const key_list *k = arg;
    cbor_put_array(e, k->n);
    for (size_t i = 0; i < k->n; i++)
        cbor_put_bstr(e, k->keys[i].ptr, k->keys[i].len);
}

typedef struct {
    const dohost_entry *entries;
    size_t n;
} entry_list;

static void encode_entries(cbor_enc *e, const void *arg) /* kv-entries */
{
    const entry_list *l = arg;
    cbor_put_map(e, l->n);
    for (size_t i = 0; i < l->n; i++) {
        cbor_put_bstr(e, l->entries[i].key.ptr, l->entries[i].key.len);
        cbor_put_bstr(e, l->entries[i].value.ptr, l->entries[i].value.len);
    }
}

int32_t dohost_kv_get_many(const dohost_bytes *keys, size_t n, dohost_bytes *values)
{
    key_list kl = {keys, n};
    size_t len, cap, count;
    dohost_bytes res;
    cbor_dec d;
    for (size_t i = 0; i < n; i++)
        values[i] = (dohost_bytes){NULL, 0};
    const uint8_t *in = encode(encode_keys, &kl, &len);
    uint8_t *buf = in ? out_space(SCRATCH_MIN, &cap) : NULL;
    if (!buf)
        return DOHOST_ERR_NO_MEMORY;
    int32_t st = take_output(dohost_raw_kv_get_many(in, len, buf, cap), buf, cap, &res);
    if (st < 0)
        return st;
    cbor_dec_init(&d, res.ptr, res.len);
    cbor_get_map(&d, &count);
    for (size_t j = 0; j < count && !d.err; j++) {
        dohost_bytes k, v;
        cbor_get_bstr(&d, &k.ptr, &k.len);
        cbor_get_bstr(&d, &v.ptr, &v.len);
        for (size_t i = 0; i < n && !d.err; i++) /* n <= 128: a scan is fine */
            if (bytes_eq(keys[i].ptr, keys[i].len, k.ptr, k.len))
                values[i] = v;
    }
    return cbor_dec_done(&d) ? (int32_t)count : DOHOST_ERR_SDK_DECODE;
}

int32_t dohost_kv_put_many(const dohost_entry *entries, size_t n)
{
    entry_list l = {entries, n};
    size_t len;
    const uint8_t *in = encode(encode_entries, &l, &len);
    return in ? dohost_raw_kv_put_many(in, len) : DOHOST_ERR_NO_MEMORY;
}

int32_t dohost_kv_delete_many(const dohost_bytes *keys, size_t n)
{
    key_list kl = {keys, n};
    size_t len;
    const uint8_t *in = encode(encode_keys, &kl, &len);
    return in ? dohost_raw_kv_delete_many(in, len) : DOHOST_ERR_NO_MEMORY;
}

/* ---- Listing ------------------------------------------------------------------------- */

static void encode_list_options(cbor_enc *e, const void *arg) /* list-options */
{
    const dohost_list_options *o = arg;
    cbor_put_map(e, (o->prefix != NULL) + (o->start != NULL) + (o->end != NULL) +
                        (o->reverse ? 1 : 0) + (o->limit != 0));
    if (o->prefix) {
        cbor_put_cstr(e, "prefix");
        cbor_put_bstr(e, o->prefix, o->prefix_len);
    }
    if (o->start) {
        cbor_put_cstr(e, "start");
        cbor_put_bstr(e, o->start, o->start_len);
    }
    if (o->end) {
        cbor_put_cstr(e, "end");
        cbor_put_bstr(e, o->end, o->end_len);
    }
    if (o->reverse) {
        cbor_put_cstr(e, "reverse");
        cbor_put_bool(e, true);
    }
    if (o->limit) {
        cbor_put_cstr(e, "limit");
        cbor_put_uint(e, o->limit);
    }
}

/* One kv_list call; leaves `page` at the first entry of the returned list-result. */
static int32_t fetch_page(dohost_list_iter *it)
{
    dohost_list_options o = it->opts;
    size_t len, cap, n;
    dohost_bytes res;
    cbor_dec d;
    if (o.limit)
        o.limit -= it->returned; /* what is left of the caller's limit */
    const uint8_t *in = encode(encode_list_options, &o, &len);
    uint8_t *buf = in ? out_space(SCRATCH_MIN, &cap) : NULL;
    if (!buf)
        return DOHOST_ERR_NO_MEMORY;
    int32_t st = take_output(dohost_raw_kv_list(in, len, buf, cap), buf, cap, &res);
    if (st < 0)
        return st;
    it->pages++;
    it->left = 0;
    it->more = false;
    it->last_key = (dohost_bytes){NULL, 0};
    cbor_dec_init(&d, res.ptr, res.len);
    cbor_get_map(&d, &n);
    for (size_t i = 0; i < n && !d.err; i++) {
        const char *k;
        size_t klen;
        cbor_get_tstr(&d, &k, &klen);
        if (!d.err && cbor_str_eq(k, klen, "entries") && cbor_get_array(&d, &it->left)) {
            it->page = d; /* entries are decoded lazily by dohost_list_next */
            for (size_t j = 0; j < it->left; j++)
                cbor_skip(&d);
        } else if (!d.err && cbor_str_eq(k, klen, "more")) {
            cbor_get_bool(&d, &it->more);
        } else {
            cbor_skip(&d);
        }
    }
    if (!cbor_dec_done(&d)) {
        it->left = 0;
        it->more = false;
        return DOHOST_ERR_SDK_DECODE;
    }
    return 0;
}

int32_t dohost_list_begin(dohost_list_iter *it, const dohost_list_options *opts)
{
    *it = (dohost_list_iter){0};
    if (opts)
        it->opts = *opts;
    return fetch_page(it);
}

/* Moves the range past the last key received (abi/README.md, kv_list). */
static bool continue_after_last_key(dohost_list_iter *it)
{
    dohost_bytes last = it->last_key;
    if (it->opts.reverse) { /* descending: stop before the smallest key seen so far */
        it->opts.end = last.ptr;
        it->opts.end_len = last.len;
        return true;
    }
    /* ascending: the smallest key after `last` in byte order is `last` + 0x00 */
    uint8_t *next = dohost_alloc(last.len + 1);
    if (!next)
        return false;
    if (last.len)
        __builtin_memcpy(next, last.ptr, last.len);
    next[last.len] = 0;
    it->opts.start = next;
    it->opts.start_len = last.len + 1;
    return true;
}

int32_t dohost_list_next(dohost_list_iter *it, dohost_bytes *key, dohost_bytes *value)
{
    for (;;) {
        if (it->opts.limit && it->returned >= it->opts.limit)
            return 0;
        if (it->left > 0) {
            size_t pair;
            if (!cbor_get_array(&it->page, &pair) || pair != 2 ||
                !cbor_get_bstr(&it->page, &key->ptr, &key->len) ||
                !cbor_get_bstr(&it->page, &value->ptr, &value->len))
                return DOHOST_ERR_SDK_DECODE;
            it->left--;
            it->returned++;
            it->last_key = *key;
            return 1;
        }
        /* A page without entries cannot be continued (and must not loop forever). */
        if (!it->more || it->last_key.ptr == NULL)
            return 0;
        if (!continue_after_last_key(it))
            return DOHOST_ERR_NO_MEMORY;
        int32_t st = fetch_page(it);
        if (st < 0)
            return st;
    }
}

/* ---- Errors -------------------------------------------------------------------------- */

int32_t dohost_last_error(dohost_error *err)
{
    size_t cap, n, len;
    dohost_bytes res;
    cbor_dec d;
    uint8_t *buf = out_space(SCRATCH_MIN, &cap);
    *err = (dohost_error){.code = 0, .name = "", .message = ""};
    if (!buf)
        return DOHOST_ERR_NO_MEMORY;
    int32_t st = take_output(dohost_raw_last_error(buf, cap), buf, cap, &res);
    if (st < 0)
        return st;
    cbor_dec_init(&d, res.ptr, res.len);
    cbor_get_map(&d, &n);
    for (size_t i = 0; i < n && !d.err; i++) {
        const char *k;
        size_t klen;
        int64_t code;
        cbor_get_tstr(&d, &k, &klen);
        if (d.err)
            break;
        if (cbor_str_eq(k, klen, "code")) {
            if (cbor_get_int(&d, &code))
                err->code = (int32_t)code;
        } else if (cbor_str_eq(k, klen, "name")) {
            get_text(&d, &err->name, &len);
        } else if (cbor_str_eq(k, klen, "message")) {
            get_text(&d, &err->message, &len);
        } else {
            cbor_skip(&d);
        }
    }
    return cbor_dec_done(&d) ? 0 : DOHOST_ERR_SDK_DECODE;
}

const char *dohost_status_name(int32_t status)
{
    static const char *const names[] = {
        "internal",      "bad_pointer",   "not_found",        "key_too_large",
        "value_too_large", "too_many_keys", "quota_exceeded", "bad_encoding",
        "not_supported", "no_result",     "invalid_argument", "storage_error",
        "buffer_too_small", "limit_exceeded", "call_cycle",   "call_depth",
        "call_failed",   "sql_error",     "sql_refused",
    };
    if (status >= 0)
        return "ok";
    if (status >= -(int32_t)(sizeof names / sizeof names[0]))
        return names[-status - 1];
    if (status == DOHOST_ERR_NO_MEMORY)
        return "out_of_memory";
    if (status == DOHOST_ERR_SDK_DECODE)
        return "sdk_decode";
    return "unknown";
}

/* ---- Alarms -------------------------------------------------------------------------- */

int32_t dohost_alarm_set(int64_t time_ms)
{
    return dohost_raw_alarm_set(time_ms);
}

int32_t dohost_alarm_get(int64_t *out)
{
    uint8_t le[8]; /* the host writes bytes, so no alignment is assumed */
    int32_t st = dohost_raw_alarm_get(le);
    if (st == 1 && out) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
            v = v << 8 | le[i];
        *out = (int64_t)v;
    }
    return st;
}

int32_t dohost_alarm_delete(void)
{
    return dohost_raw_alarm_delete();
}

/* ---- Utilities ----------------------------------------------------------------------- */

int32_t dohost_log_bytes(int level, const void *text, size_t len)
{
    return dohost_raw_log(level, text, len);
}

int32_t dohost_log(int level, const char *text)
{
    return dohost_raw_log(level, text, dohost_strlen(text));
}

int32_t dohost_log_debug(const char *text)
{
    return dohost_log(DOHOST_LOG_DEBUG, text);
}

int32_t dohost_log_info(const char *text)
{
    return dohost_log(DOHOST_LOG_INFO, text);
}

int32_t dohost_log_warn(const char *text)
{
    return dohost_log(DOHOST_LOG_WARN, text);
}

int32_t dohost_log_error(const char *text)
{
    return dohost_log(DOHOST_LOG_ERROR, text);
}

int64_t dohost_now_ms(void)
{
    return dohost_raw_now_ms();
}

int32_t dohost_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        size_t n = len < RANDOM_MAX_CALL ? len : RANDOM_MAX_CALL;
        int32_t st = dohost_raw_random_fill(p, n);
        if (st < 0)
            return st;
        p += n;
        len -= n;
    }
    return 0;
}

size_t dohost_fmt_i64(char *buf, int64_t v)
{
    char digits[20];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v; /* also right for INT64_MIN */
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = digits[--n];
    buf[len] = '\0';
    return len;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool dohost_parse_i64(const void *text, size_t len, int64_t *out)
{
    if (len == 0)
        return false;
    const char *s = text, *end = s + len;
    while (s < end && is_space(*s))
        s++;
    while (end > s && is_space(end[-1]))
        end--;
    bool neg = s < end && *s == '-';
    if (s < end && (*s == '-' || *s == '+'))
        s++;
    if (s == end)
        return false;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned digit = (unsigned)(*s - '0');
        if (v > (limit - digit) / 10)
            return false; /* would overflow */
        v = v * 10 + digit;
    }
    if (neg)
        *out = v == 0 ? 0 : -(int64_t)(v - 1) - 1; /* no overflow for INT64_MIN */
    else
        *out = (int64_t)v;
    return true;
}
