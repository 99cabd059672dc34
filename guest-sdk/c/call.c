/*
 * call.c - calls to other objects (see call.h; abi/README.md section 5, "Object calls").
 */
#include "call.h"

typedef struct {
    const char *cls;
    const char *key; /* "name" or "id" */
    const void *val;
    size_t val_len;
} target_args;

static void encode_target(cbor_enc *e, const target_args *t) /* call-target */
{
    cbor_put_map(e, 2);
    cbor_put_cstr(e, "class");
    cbor_put_cstr(e, t->cls);
    cbor_put_cstr(e, t->key);
    cbor_put_tstr(e, t->val, t->val_len);
}

static size_t text_len(const char *s, size_t len)
{
    return len ? len : dohost_strlen(s);
}

static void encode_request(cbor_enc *e, const dohost_call_request *r) /* request */
{
    cbor_put_map(e, 5);
    cbor_put_cstr(e, "method");
    cbor_put_cstr(e, r->method ? r->method : "GET");
    cbor_put_cstr(e, "path");
    cbor_put_cstr(e, r->path ? r->path : "/");
    cbor_put_cstr(e, "query");
    cbor_put_cstr(e, r->query ? r->query : "");
    cbor_put_cstr(e, "headers");
    cbor_put_array(e, r->header_count);
    for (size_t i = 0; i < r->header_count; i++) {
        const dohost_header *h = &r->headers[i];
        cbor_put_array(e, 2);
        cbor_put_tstr(e, h->name, text_len(h->name, h->name_len));
        cbor_put_tstr(e, h->value, text_len(h->value, h->value_len));
    }
    cbor_put_cstr(e, "body");
    cbor_put_bstr(e, r->body, r->body_len);
}

/* Both messages into one arena buffer: one pass to measure, one to write. */
static uint8_t *encode_call(const target_args *t, const dohost_call_request *r, size_t *tlen,
                            size_t *rlen)
{
    cbor_enc e;
    cbor_enc_init(&e, NULL, 0);
    encode_target(&e, t);
    *tlen = e.len;
    encode_request(&e, r);
    *rlen = e.len - *tlen;
    uint8_t *buf = dohost_alloc(e.len);
    if (!buf)
        return NULL;
    cbor_enc_init(&e, buf, *tlen + *rlen);
    encode_target(&e, t);
    encode_request(&e, r);
    return cbor_enc_ok(&e) ? buf : NULL;
}

typedef struct {
    const uint8_t *msgs;
    size_t tlen, rlen;
} call_ctx;

static int32_t raw_call(const void *ctx, void *buf, size_t cap)
{
    const call_ctx *c = ctx;
    return dohost_raw_call(c->msgs, c->tlen, c->msgs + c->tlen, c->rlen, buf, cap);
}

static char *copy_text(const void *p, size_t n)
{
    char *s = dohost_alloc(n + 1);
    if (s) {
        if (n)
            __builtin_memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static bool decode_headers(cbor_dec *d, dohost_call_response *resp)
{
    size_t n;
    if (!cbor_get_array(d, &n))
        return false;
    dohost_header *hs = dohost_alloc((n ? n : 1) * sizeof *hs); /* n is bounded by the input */
    if (!hs)
        return false;
    for (size_t i = 0; i < n; i++) {
        size_t pair;
        const char *k, *v;
        if (!cbor_get_array(d, &pair) || pair != 2 || !cbor_get_tstr(d, &k, &hs[i].name_len) ||
            !cbor_get_tstr(d, &v, &hs[i].value_len))
            return false;
        hs[i].name = copy_text(k, hs[i].name_len);
        hs[i].value = copy_text(v, hs[i].value_len);
        if (!hs[i].name || !hs[i].value)
            return false;
    }
    resp->headers = hs;
    resp->header_count = n;
    return true;
}

static int32_t decode_response(dohost_bytes in, dohost_call_response *resp)
{
    static const uint8_t empty[1] = {0};
    cbor_dec d;
    size_t n;
    *resp = (dohost_call_response){.status = 200, .body = empty};
    cbor_dec_init(&d, in.ptr, in.len);
    if (!cbor_get_map(&d, &n))
        return DOHOST_ERR_SDK_DECODE;
    for (size_t i = 0; i < n && !d.err; i++) {
        const char *k;
        size_t klen;
        if (!cbor_get_tstr(&d, &k, &klen))
            break;
        if (cbor_str_eq(k, klen, "status")) {
            uint64_t st;
            if (cbor_get_uint(&d, &st))
                resp->status = (int)st;
        } else if (cbor_str_eq(k, klen, "headers")) {
            d.err |= !decode_headers(&d, resp);
        } else if (cbor_str_eq(k, klen, "body")) {
            const uint8_t *p;
            size_t len;
            if (cbor_get_bstr(&d, &p, &len)) {
                resp->body = (const uint8_t *)copy_text(p, len);
                resp->body_len = len;
                d.err |= resp->body == NULL;
            }
        } else {
            cbor_skip(&d); /* response.cddl may grow */
        }
    }
    return cbor_dec_done(&d) ? resp->status : DOHOST_ERR_SDK_DECODE;
}

static int32_t do_call(const target_args *t, const dohost_call_request *req,
                       dohost_call_response *resp)
{
    static const dohost_call_request get_root = {0};
    call_ctx c;
    dohost_bytes out;
    dohost_call_response ignored;
    c.msgs = encode_call(t, req ? req : &get_root, &c.tlen, &c.rlen);
    if (!c.msgs)
        return DOHOST_ERR_NO_MEMORY;
    int32_t st = dohost__output(raw_call, &c, &out);
    if (st < 0)
        return st;
    return decode_response(out, resp ? resp : &ignored);
}

int32_t dohost_call(const char *cls, const char *name, const dohost_call_request *req,
                    dohost_call_response *resp)
{
    target_args t = {cls, "name", name, dohost_strlen(name)};
    return do_call(&t, req, resp);
}

int32_t dohost_call_n(const char *cls, const void *name, size_t name_len,
                      const dohost_call_request *req, dohost_call_response *resp)
{
    target_args t = {cls, "name", name, name_len};
    return do_call(&t, req, resp);
}

int32_t dohost_call_id(const char *cls, const char *id_hex, const dohost_call_request *req,
                       dohost_call_response *resp)
{
    target_args t = {cls, "id", id_hex, dohost_strlen(id_hex)};
    return do_call(&t, req, resp);
}

const char *dohost_call_header(const dohost_call_response *resp, const char *name)
{
    return dohost__header_find(resp->headers, resp->header_count, name);
}

static int32_t raw_object_info(const void *ctx, void *buf, size_t cap)
{
    (void)ctx;
    return dohost_raw_object_info(buf, cap);
}

int32_t dohost_self(dohost_object_ref *out)
{
    dohost_bytes res;
    cbor_dec d;
    size_t n;
    *out = (dohost_object_ref){.class_name = "", .id = ""};
    int32_t st = dohost__output(raw_object_info, NULL, &res);
    if (st < 0)
        return st;
    cbor_dec_init(&d, res.ptr, res.len);
    cbor_get_map(&d, &n);
    for (size_t i = 0; i < n && !d.err; i++) {
        const char *k, *v;
        size_t klen, vlen;
        if (!cbor_get_tstr(&d, &k, &klen) || !cbor_get_tstr(&d, &v, &vlen))
            break;
        char *copy = copy_text(v, vlen);
        if (!copy)
            return DOHOST_ERR_NO_MEMORY;
        if (cbor_str_eq(k, klen, "class"))
            out->class_name = copy;
        else if (cbor_str_eq(k, klen, "id"))
            out->id = copy;
        else if (cbor_str_eq(k, klen, "name"))
            out->name = copy, out->name_len = vlen;
    }
    return cbor_dec_done(&d) ? 0 : DOHOST_ERR_SDK_DECODE;
}

int dohost_caller(const dohost_request *req, dohost_object_ref *out)
{
    *out = (dohost_object_ref){0};
    for (size_t i = 0; i < req->header_count; i++) {
        const dohost_header *h = &req->headers[i];
        if (dohost_streq(h->name, "dohost-caller-class"))
            out->class_name = h->value;
        else if (dohost_streq(h->name, "dohost-caller-id"))
            out->id = h->value;
        else if (dohost_streq(h->name, "dohost-caller-name"))
            out->name = h->value, out->name_len = h->value_len;
    }
    return out->class_name != NULL && out->id != NULL;
}
