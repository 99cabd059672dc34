/*
 * sql.c - see sql.h. Parameters are encoded as a CBOR array (abi/sql.cddl) into the
 * event arena; the result is read with the SDK's output-buffer helper and decoded
 * lazily: the header (columns, counts) at once, the rows one by one.
 */
#include "sql.h"

typedef struct {
    const dohost_sql_value *params;
    size_t n;
} param_list;

static void encode_params(cbor_enc *e, const param_list *l)
{
    cbor_put_array(e, l->n);
    for (size_t i = 0; i < l->n; i++) {
        const dohost_sql_value *v = &l->params[i];
        switch (v->type) {
        case DOHOST_SQL_INT: cbor_put_int(e, v->i); break;
        case DOHOST_SQL_FLOAT: cbor_put_double(e, v->f); break;
        case DOHOST_SQL_TEXT: cbor_put_tstr(e, (const char *)v->ptr, v->len); break;
        case DOHOST_SQL_BLOB: cbor_put_bstr(e, v->ptr, v->len); break;
        default: cbor_put_null(e); break;
        }
    }
}

typedef struct {
    const void *sql;
    size_t sql_len;
    const uint8_t *params;
    size_t params_len;
} exec_args;

static int32_t call_exec(const void *ctx, void *buf, size_t cap)
{
    const exec_args *a = ctx;
    return dohost_raw_sql_exec(a->sql, a->sql_len, a->params, a->params_len, buf, cap);
}

/* Decodes the sql-result map; leaves res->next_row at the first row. */
static int32_t decode_header(dohost_bytes in, dohost_sql_result *res)
{
    cbor_dec d;
    size_t n;
    *res = (dohost_sql_result){0};
    cbor_dec_init(&d, in.ptr, in.len);
    cbor_get_map(&d, &n);
    for (size_t i = 0; i < n && !d.err; i++) {
        const char *k;
        size_t klen;
        cbor_get_tstr(&d, &k, &klen);
        if (d.err)
            break;
        if (cbor_str_eq(k, klen, "columns")) {
            size_t count;
            if (!cbor_get_array(&d, &count))
                break;
            const char **names = dohost_alloc((count ? count : 1) * sizeof *names);
            if (!names)
                return DOHOST_ERR_NO_MEMORY;
            for (size_t j = 0; j < count && !d.err; j++) {
                const char *p;
                size_t len;
                if (!cbor_get_tstr(&d, &p, &len))
                    break;
                char *s = dohost_alloc(len + 1);
                if (!s)
                    return DOHOST_ERR_NO_MEMORY;
                if (len)
                    __builtin_memcpy(s, p, len);
                s[len] = '\0';
                names[j] = s;
            }
            res->columns = names;
            res->column_count = count;
        } else if (cbor_str_eq(k, klen, "rows")) {
            if (!cbor_get_array(&d, &res->row_count))
                break;
            res->next_row = d; /* rows are decoded by dohost_sql_next */
            for (size_t j = 0; j < res->row_count && !d.err; j++)
                cbor_skip(&d);
        } else if (cbor_str_eq(k, klen, "rows_read")) {
            cbor_get_uint(&d, &res->rows_read);
        } else if (cbor_str_eq(k, klen, "rows_written")) {
            cbor_get_uint(&d, &res->rows_written);
        } else {
            cbor_skip(&d);
        }
    }
    if (!cbor_dec_done(&d)) {
        res->row_count = 0;
        return DOHOST_ERR_SDK_DECODE;
    }
    res->rows_left = res->row_count;
    res->row = dohost_alloc((res->column_count ? res->column_count : 1) * sizeof *res->row);
    return res->row ? 0 : DOHOST_ERR_NO_MEMORY;
}

int32_t dohost_sql_exec_n(const void *sql, size_t sql_len, const dohost_sql_value *params,
                          size_t nparams, dohost_sql_result *out)
{
    exec_args a = {sql, sql_len, NULL, 0};
    param_list l = {params, nparams};
    dohost_bytes res;
    if (nparams > 0) { /* params_len 0 means "no parameters" */
        cbor_enc e;
        cbor_enc_init(&e, NULL, 0);
        encode_params(&e, &l);
        uint8_t *buf = dohost_alloc(e.len);
        if (!buf)
            return DOHOST_ERR_NO_MEMORY;
        a.params_len = e.len;
        cbor_enc_init(&e, buf, a.params_len);
        encode_params(&e, &l);
        a.params = buf;
    }
    int32_t st = dohost__output(call_exec, &a, &res);
    if (st < 0)
        return st;
    dohost_sql_result local;
    dohost_sql_result *r = out ? out : &local;
    st = decode_header(res, r);
    return st < 0 ? st : (int32_t)r->row_count;
}

int32_t dohost_sql_exec(const char *sql, const dohost_sql_value *params, size_t nparams,
                        dohost_sql_result *out)
{
    return dohost_sql_exec_n(sql, dohost_strlen(sql), params, nparams, out);
}

static bool decode_value(cbor_dec *d, dohost_sql_value *v)
{
    *v = (dohost_sql_value){0};
    switch (cbor_peek(d)) {
    case CBOR_UINT:
    case CBOR_NINT:
        v->type = DOHOST_SQL_INT;
        return cbor_get_int(d, &v->i);
    case CBOR_FLOAT:
        v->type = DOHOST_SQL_FLOAT;
        return cbor_get_double(d, &v->f);
    case CBOR_TSTR: {
        const char *p;
        v->type = DOHOST_SQL_TEXT;
        if (!cbor_get_tstr(d, &p, &v->len))
            return false;
        v->ptr = (const uint8_t *)p;
        return true;
    }
    case CBOR_BSTR:
        v->type = DOHOST_SQL_BLOB;
        return cbor_get_bstr(d, &v->ptr, &v->len);
    case CBOR_NULL:
        return cbor_get_null(d);
    default:
        d->err = true;
        return false;
    }
}

int32_t dohost_sql_next(dohost_sql_result *res)
{
    size_t n;
    if (res->rows_left == 0)
        return 0;
    if (!cbor_get_array(&res->next_row, &n) || n != res->column_count)
        return DOHOST_ERR_SDK_DECODE;
    for (size_t i = 0; i < n; i++)
        if (!decode_value(&res->next_row, &res->row[i]))
            return DOHOST_ERR_SDK_DECODE;
    res->rows_left--;
    return 1;
}

int dohost_sql_column(const dohost_sql_result *res, const char *name)
{
    for (size_t i = 0; i < res->column_count; i++)
        if (dohost_streq(res->columns[i], name))
            return (int)i;
    return -1;
}

const char *dohost_sql_cstr(const dohost_sql_value *v)
{
    if (v->type != DOHOST_SQL_TEXT && v->type != DOHOST_SQL_BLOB)
        return NULL;
    char *s = dohost_alloc(v->len + 1);
    if (!s)
        return NULL;
    if (v->len)
        __builtin_memcpy(s, v->ptr, v->len);
    s[v->len] = '\0';
    return s;
}
