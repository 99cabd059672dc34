/*
 * cbor.c - see cbor.h. Every read is checked against the end of the input before it
 * happens; lengths from the input are compared with the remaining byte count, never
 * added to pointers first (so a hostile 2^64 length cannot wrap around).
 */
#include "cbor.h"

enum {
    MT_UINT = 0,
    MT_NINT = 1,
    MT_BSTR = 2,
    MT_TSTR = 3,
    MT_ARRAY = 4,
    MT_MAP = 5,
    MT_TAG = 6,
    MT_SIMPLE = 7,
};

enum { SIMPLE_FALSE = 20, SIMPLE_TRUE = 21, SIMPLE_NULL = 22 };
enum { AI_HALF = 25, AI_SINGLE = 26, AI_DOUBLE = 27 }; /* additional info of major type 7 */

/* ---- Encoder --------------------------------------------------------------------- */

void cbor_enc_init(cbor_enc *e, void *buf, size_t cap)
{
    e->buf = (uint8_t *)buf;
    e->cap = buf ? cap : 0;
    e->len = 0;
}

bool cbor_enc_ok(const cbor_enc *e)
{
    return e->len <= e->cap;
}

static void put_bytes(cbor_enc *e, const void *p, size_t n)
{
    /* Only write when the whole run fits; `len` keeps counting either way. */
    if (e->len <= e->cap && n <= e->cap - e->len && n > 0)
        __builtin_memcpy(e->buf + e->len, p, n);
    e->len += n;
}

/* The initial byte plus the big-endian argument in the shortest form (RFC 8949 §3).
 * noinline here and in read_head: inlined into every caller they triple the code size. */
__attribute__((noinline)) static void put_head(cbor_enc *e, unsigned major, uint64_t arg)
{
    uint8_t h[9];
    size_t n;
    if (arg < 24) {
        h[0] = (uint8_t)(major << 5 | arg);
        n = 1;
    } else {
        unsigned ai;
        if (arg <= 0xff) {
            ai = 24;
            n = 1;
        } else if (arg <= 0xffff) {
            ai = 25;
            n = 2;
        } else if (arg <= 0xffffffffu) {
            ai = 26;
            n = 4;
        } else {
            ai = 27;
            n = 8;
        }
        h[0] = (uint8_t)(major << 5 | ai);
        for (size_t i = 0; i < n; i++)
            h[n - i] = (uint8_t)(arg >> (8 * i));
        n += 1;
    }
    put_bytes(e, h, n);
}

void cbor_put_uint(cbor_enc *e, uint64_t v)
{
    put_head(e, MT_UINT, v);
}

void cbor_put_int(cbor_enc *e, int64_t v)
{
    if (v >= 0)
        put_head(e, MT_UINT, (uint64_t)v);
    else /* -1 - v, written so that INT64_MIN does not overflow */
        put_head(e, MT_NINT, ~(uint64_t)v);
}

void cbor_put_bstr(cbor_enc *e, const void *p, size_t n)
{
    put_head(e, MT_BSTR, n);
    put_bytes(e, p, n);
}

void cbor_put_tstr(cbor_enc *e, const char *p, size_t n)
{
    put_head(e, MT_TSTR, n);
    put_bytes(e, p, n);
}

void cbor_put_cstr(cbor_enc *e, const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    cbor_put_tstr(e, s, n);
}

void cbor_put_array(cbor_enc *e, size_t count)
{
    put_head(e, MT_ARRAY, count);
}

void cbor_put_map(cbor_enc *e, size_t count)
{
    put_head(e, MT_MAP, count);
}

void cbor_put_bool(cbor_enc *e, bool v)
{
    put_head(e, MT_SIMPLE, v ? SIMPLE_TRUE : SIMPLE_FALSE);
}

void cbor_put_null(cbor_enc *e)
{
    put_head(e, MT_SIMPLE, SIMPLE_NULL);
}

void cbor_put_double(cbor_enc *e, double v)
{
    uint64_t bits;
    uint8_t h[9];
    __builtin_memcpy(&bits, &v, sizeof bits);
    h[0] = (uint8_t)(MT_SIMPLE << 5 | AI_DOUBLE);
    for (size_t i = 0; i < 8; i++)
        h[8 - i] = (uint8_t)(bits >> (8 * i));
    put_bytes(e, h, sizeof h);
}

/* ---- Decoder --------------------------------------------------------------------- */

void cbor_dec_init(cbor_dec *d, const void *buf, size_t len)
{
    d->p = (const uint8_t *)buf;
    d->end = buf ? d->p + len : d->p;
    d->err = buf == NULL && len > 0;
}

bool cbor_dec_done(const cbor_dec *d)
{
    return !d->err && d->p == d->end;
}

static bool fail(cbor_dec *d)
{
    d->err = true;
    return false;
}

static size_t remaining(const cbor_dec *d)
{
    return (size_t)(d->end - d->p);
}

cbor_type cbor_peek(const cbor_dec *d)
{
    if (d->err || d->p >= d->end)
        return CBOR_END;
    uint8_t b = *d->p;
    switch (b >> 5) {
    case MT_UINT: return CBOR_UINT;
    case MT_NINT: return CBOR_NINT;
    case MT_BSTR: return CBOR_BSTR;
    case MT_TSTR: return CBOR_TSTR;
    case MT_ARRAY: return CBOR_ARRAY;
    case MT_MAP: return CBOR_MAP;
    case MT_TAG: return CBOR_TAG;
    default:
        if ((b & 31) == SIMPLE_FALSE || (b & 31) == SIMPLE_TRUE)
            return CBOR_BOOL;
        if ((b & 31) >= AI_HALF && (b & 31) <= AI_DOUBLE)
            return CBOR_FLOAT;
        return (b & 31) == SIMPLE_NULL ? CBOR_NULL : CBOR_OTHER;
    }
}

/* Reads an initial byte and its argument. Rejects indefinite lengths and reserved forms. */
__attribute__((noinline)) static bool read_head(cbor_dec *d, unsigned *major, uint64_t *arg)
{
    if (d->err || d->p >= d->end)
        return fail(d);
    uint8_t b = *d->p++;
    unsigned ai = b & 31;
    *major = b >> 5;
    if (ai < 24) {
        *arg = ai;
        return true;
    }
    if (ai > 27) /* 28..30 reserved, 31 indefinite length / break */
        return fail(d);
    size_t n = (size_t)1 << (ai - 24);
    if (remaining(d) < n)
        return fail(d);
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | *d->p++;
    *arg = v;
    return true;
}

/* Reads a head that must be of major type `want`. */
static bool expect(cbor_dec *d, unsigned want, uint64_t *arg)
{
    unsigned major;
    if (!read_head(d, &major, arg))
        return false;
    return major == want ? true : fail(d);
}

bool cbor_get_uint(cbor_dec *d, uint64_t *v)
{
    return expect(d, MT_UINT, v);
}

bool cbor_get_int(cbor_dec *d, int64_t *v)
{
    unsigned major;
    uint64_t arg;
    if (!read_head(d, &major, &arg))
        return false;
    if ((major != MT_UINT && major != MT_NINT) || arg > (uint64_t)INT64_MAX)
        return fail(d);
    *v = major == MT_UINT ? (int64_t)arg : -1 - (int64_t)arg;
    return true;
}

static bool get_string(cbor_dec *d, unsigned major, const uint8_t **p, size_t *n)
{
    uint64_t len;
    if (!expect(d, major, &len))
        return false;
    if (len > remaining(d))
        return fail(d);
    *p = d->p;
    *n = (size_t)len;
    d->p += len;
    return true;
}

bool cbor_get_bstr(cbor_dec *d, const uint8_t **p, size_t *n)
{
    return get_string(d, MT_BSTR, p, n);
}

bool cbor_get_tstr(cbor_dec *d, const char **p, size_t *n)
{
    return get_string(d, MT_TSTR, (const uint8_t **)p, n);
}

/* Each element takes at least one byte: a count above that is malformed. */
static bool get_count(cbor_dec *d, unsigned major, size_t *count)
{
    uint64_t n;
    if (!expect(d, major, &n))
        return false;
    uint64_t min_bytes = major == MT_MAP ? 2 : 1;
    if (n > remaining(d) / min_bytes)
        return fail(d);
    *count = (size_t)n;
    return true;
}

bool cbor_get_array(cbor_dec *d, size_t *count)
{
    return get_count(d, MT_ARRAY, count);
}

bool cbor_get_map(cbor_dec *d, size_t *count)
{
    return get_count(d, MT_MAP, count);
}

bool cbor_get_bool(cbor_dec *d, bool *v)
{
    uint64_t arg;
    if (!expect(d, MT_SIMPLE, &arg))
        return false;
    if (arg != SIMPLE_FALSE && arg != SIMPLE_TRUE)
        return fail(d);
    *v = arg == SIMPLE_TRUE;
    return true;
}

bool cbor_get_null(cbor_dec *d)
{
    uint64_t arg;
    if (!expect(d, MT_SIMPLE, &arg))
        return false;
    return arg == SIMPLE_NULL ? true : fail(d);
}

/* IEEE half precision to double, by hand: no libc (ldexp) in the freestanding build. */
static double half_to_double(uint16_t h)
{
    uint64_t sign = (uint64_t)(h >> 15) << 63;
    unsigned exp = (h >> 10) & 0x1f;
    uint64_t mant = h & 0x3ff;
    double v;
    if (exp == 0) { /* zero or subnormal: mant * 2^-24 */
        v = (double)mant / 16777216.0;
        return sign ? -v : v;
    }
    uint64_t bits = sign | (exp == 31 ? (uint64_t)0x7ff << 52 : (uint64_t)(exp - 15 + 1023) << 52) |
                    mant << 42;
    __builtin_memcpy(&v, &bits, sizeof v);
    return v;
}

bool cbor_get_double(cbor_dec *d, double *v)
{
    if (d->err || d->p >= d->end)
        return fail(d);
    unsigned ai = *d->p & 31;
    uint64_t arg;
    if (!expect(d, MT_SIMPLE, &arg))
        return false;
    if (ai == AI_DOUBLE) {
        __builtin_memcpy(v, &arg, sizeof *v);
    } else if (ai == AI_SINGLE) {
        uint32_t bits = (uint32_t)arg;
        float f;
        __builtin_memcpy(&f, &bits, sizeof f);
        *v = f;
    } else if (ai == AI_HALF) {
        *v = half_to_double((uint16_t)arg);
    } else {
        return fail(d);
    }
    return true;
}

bool cbor_skip(cbor_dec *d)
{
    /* Count the items still to skip instead of recursing, so deep nesting in hostile
     * input cannot overflow the stack. Counts are bounded by the input size. */
    uint64_t pending = 1;
    while (pending > 0) {
        unsigned major;
        uint64_t arg;
        if (!read_head(d, &major, &arg))
            return false;
        pending--;
        switch (major) {
        case MT_BSTR:
        case MT_TSTR:
            if (arg > remaining(d))
                return fail(d);
            d->p += arg;
            break;
        case MT_ARRAY:
        case MT_MAP:
            if (arg > remaining(d))
                return fail(d);
            pending += major == MT_MAP ? 2 * arg : arg;
            break;
        case MT_TAG:
            pending += 1; /* the tagged item follows */
            break;
        default: /* integers and simple values/floats: read_head consumed them */
            break;
        }
    }
    return true;
}

bool cbor_str_eq(const char *p, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || s[i] != p[i]) /* s shorter than n, or a difference */
            return false;
    return s[n] == '\0';
}
