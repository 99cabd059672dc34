/*
 * ws.c - WebSockets (see ws.h; abi/README.md section 5, "WebSockets").
 */
#include "ws.h"

static size_t slen(const char *s)
{
    return s ? dohost_strlen(s) : 0;
}

static char *copy_text(const char *p, size_t n)
{
    char *s = dohost_alloc(n + 1);
    if (!s)
        return NULL;
    if (n)
        __builtin_memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

int32_t dohost_ws_accept(const char *const *tags, size_t tag_count)
{
    cbor_enc e;
    cbor_enc_init(&e, NULL, 0); /* measure, then write */
    cbor_put_array(&e, tag_count);
    for (size_t i = 0; i < tag_count; i++)
        cbor_put_cstr(&e, tags[i]);
    size_t n = e.len;
    uint8_t *buf = dohost_alloc(n);
    if (!buf)
        return DOHOST_ERR_NO_MEMORY;
    cbor_enc_init(&e, buf, n);
    cbor_put_array(&e, tag_count);
    for (size_t i = 0; i < tag_count; i++)
        cbor_put_cstr(&e, tags[i]);
    return cbor_enc_ok(&e) ? dohost_raw_ws_accept(buf, n) : DOHOST_ERR_NO_MEMORY;
}

int32_t dohost_ws_send(uint32_t id, int kind, const void *data, size_t len)
{
    return dohost_raw_ws_send(id, kind, data, len);
}

int32_t dohost_ws_send_text(uint32_t id, const char *text)
{
    return dohost_raw_ws_send(id, DOHOST_WS_TEXT, text, slen(text));
}

int32_t dohost_ws_send_tag(const char *tag, int kind, const void *data, size_t len)
{
    return dohost_raw_ws_send_tag(tag ? tag : "", slen(tag), kind, data, len);
}

int32_t dohost_ws_close(uint32_t id, int code, const char *reason)
{
    return dohost_raw_ws_close(id, code, reason ? reason : "", slen(reason));
}

int32_t dohost_ws_attachment_set(uint32_t id, const void *data, size_t len)
{
    return dohost_raw_ws_attachment_set(id, len ? data : "", len);
}

typedef struct {
    uint32_t id;
    const char *tag;
} ws_ctx;

static int32_t raw_attachment(const void *ctx, void *buf, size_t cap)
{
    return dohost_raw_ws_attachment_get(((const ws_ctx *)ctx)->id, buf, cap);
}

int32_t dohost_ws_attachment_get(uint32_t id, dohost_bytes *out)
{
    ws_ctx c = {id, NULL};
    return dohost__output(raw_attachment, &c, out);
}

int32_t dohost_ws_auto_response(const char *request, const char *response)
{
    if (!request)
        return dohost_raw_ws_auto_response("", 0, "", 0);
    return dohost_raw_ws_auto_response(request, slen(request), response ? response : "",
                                       slen(response));
}

/* ---- Decoding --------------------------------------------------------------------- */

static bool get_tags(cbor_dec *d, const char *const **tags, size_t *count)
{
    size_t n;
    if (!cbor_get_array(d, &n) || n > 64)
        return false;
    const char **out = dohost_alloc((n ? n : 1) * sizeof(char *));
    if (!out)
        return false;
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t len;
        if (!cbor_get_tstr(d, &p, &len) || !(out[i] = copy_text(p, len)))
            return false;
    }
    *tags = out;
    *count = n;
    return true;
}

static bool get_id(cbor_dec *d, uint32_t *id)
{
    uint64_t v;
    if (!cbor_get_uint(d, &v) || v > 0xffffffffu)
        return false;
    *id = (uint32_t)v;
    return true;
}

static int32_t raw_input(const void *ctx, void *buf, size_t cap)
{
    (void)ctx;
    return dohost_raw_input_read(buf, cap);
}

/* Reads the event input and opens its top-level map; returns the entry count or < 0. */
static int32_t open_input(cbor_dec *d)
{
    dohost_bytes in;
    int32_t st = dohost__output(raw_input, NULL, &in);
    if (st < 0)
        return st;
    size_t n;
    cbor_dec_init(d, in.ptr, in.len);
    if (!cbor_get_map(d, &n))
        return DOHOST_ERR_SDK_DECODE;
    return (int32_t)n;
}

int32_t dohost__ws_read_message(int32_t len, dohost_ws_message *m)
{
    (void)len;
    cbor_dec d;
    int32_t n = open_input(&d);
    if (n < 0)
        return n;
    *m = (dohost_ws_message){0};
    for (int32_t i = 0; i < n; i++) {
        const char *k;
        size_t klen;
        bool ok = cbor_get_tstr(&d, &k, &klen);
        if (ok && cbor_str_eq(k, klen, "id"))
            ok = get_id(&d, &m->id);
        else if (ok && cbor_str_eq(k, klen, "tags"))
            ok = get_tags(&d, &m->tags, &m->tag_count);
        else if (ok && cbor_str_eq(k, klen, "data")) {
            const char *p;
            const uint8_t *b;
            size_t dl;
            if (cbor_peek(&d) == CBOR_TSTR) {
                ok = cbor_get_tstr(&d, &p, &dl);
                m->kind = DOHOST_WS_TEXT;
                b = (const uint8_t *)p;
            } else {
                ok = cbor_get_bstr(&d, &b, &dl);
                m->kind = DOHOST_WS_BINARY;
            }
            if (ok) {
                m->data = (const uint8_t *)copy_text((const char *)b, dl);
                m->len = dl;
                ok = m->data != NULL;
            }
        } else if (ok)
            ok = cbor_skip(&d);
        if (!ok)
            return DOHOST_ERR_SDK_DECODE;
    }
    return 0;
}

int32_t dohost__ws_read_close(int32_t len, dohost_ws_close_info *c)
{
    (void)len;
    cbor_dec d;
    int32_t n = open_input(&d);
    if (n < 0)
        return n;
    *c = (dohost_ws_close_info){0};
    c->reason = "";
    for (int32_t i = 0; i < n; i++) {
        const char *k, *p;
        size_t klen, pl;
        uint64_t v;
        bool ok = cbor_get_tstr(&d, &k, &klen);
        if (ok && cbor_str_eq(k, klen, "id"))
            ok = get_id(&d, &c->id);
        else if (ok && cbor_str_eq(k, klen, "tags"))
            ok = get_tags(&d, &c->tags, &c->tag_count);
        else if (ok && cbor_str_eq(k, klen, "code")) {
            ok = cbor_get_uint(&d, &v) && v < 65536;
            c->code = (int)v;
        } else if (ok && cbor_str_eq(k, klen, "reason"))
            ok = cbor_get_tstr(&d, &p, &pl) && (c->reason = copy_text(p, pl)) != NULL;
        else if (ok && cbor_str_eq(k, klen, "clean"))
            ok = cbor_get_bool(&d, &c->clean);
        else if (ok)
            ok = cbor_skip(&d);
        if (!ok)
            return DOHOST_ERR_SDK_DECODE;
    }
    return 0;
}

int32_t dohost__ws_read_error(int32_t len, dohost_ws_error_info *e)
{
    (void)len;
    cbor_dec d;
    int32_t n = open_input(&d);
    if (n < 0)
        return n;
    *e = (dohost_ws_error_info){0};
    e->message = "";
    for (int32_t i = 0; i < n; i++) {
        const char *k, *p;
        size_t klen, pl;
        bool ok = cbor_get_tstr(&d, &k, &klen);
        if (ok && cbor_str_eq(k, klen, "id"))
            ok = get_id(&d, &e->id);
        else if (ok && cbor_str_eq(k, klen, "tags"))
            ok = get_tags(&d, &e->tags, &e->tag_count);
        else if (ok && cbor_str_eq(k, klen, "message"))
            ok = cbor_get_tstr(&d, &p, &pl) && (e->message = copy_text(p, pl)) != NULL;
        else if (ok)
            ok = cbor_skip(&d);
        if (!ok)
            return DOHOST_ERR_SDK_DECODE;
    }
    return 0;
}

/* ---- ws_list ------------------------------------------------------------------------ */

static int32_t raw_list(const void *ctx, void *buf, size_t cap)
{
    const char *tag = ((const ws_ctx *)ctx)->tag;
    return dohost_raw_ws_list(tag ? tag : "", slen(tag), buf, cap);
}

int32_t dohost_ws_list(const char *tag, dohost_ws_info **out, size_t *count)
{
    ws_ctx c = {0, tag};
    dohost_bytes res;
    int32_t st = dohost__output(raw_list, &c, &res);
    if (st < 0)
        return st;
    cbor_dec d;
    size_t n;
    cbor_dec_init(&d, res.ptr, res.len);
    if (!cbor_get_array(&d, &n))
        return DOHOST_ERR_SDK_DECODE;
    dohost_ws_info *infos = dohost_alloc((n ? n : 1) * sizeof(dohost_ws_info));
    if (!infos)
        return DOHOST_ERR_NO_MEMORY;
    for (size_t i = 0; i < n; i++) {
        dohost_ws_info *w = &infos[i];
        *w = (dohost_ws_info){0};
        w->auto_response_at = -1;
        size_t m;
        if (!cbor_get_map(&d, &m))
            return DOHOST_ERR_SDK_DECODE;
        for (size_t j = 0; j < m; j++) {
            const char *k;
            size_t klen;
            int64_t t;
            bool ok = cbor_get_tstr(&d, &k, &klen);
            if (ok && cbor_str_eq(k, klen, "id"))
                ok = get_id(&d, &w->id);
            else if (ok && cbor_str_eq(k, klen, "tags"))
                ok = get_tags(&d, &w->tags, &w->tag_count);
            else if (ok && cbor_str_eq(k, klen, "auto_response_at")) {
                ok = cbor_get_int(&d, &t);
                w->auto_response_at = t;
            } else if (ok)
                ok = cbor_skip(&d);
            if (!ok)
                return DOHOST_ERR_SDK_DECODE;
        }
    }
    *out = infos;
    *count = n;
    return 0;
}
