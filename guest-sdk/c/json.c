/*
 * json.c - a minimal JSON writer and flat-object reader (see json.h).
 */
#include "json.h"

#define GROW_MIN 256u

/* ---- Writer ------------------------------------------------------------------------------ */

void dohost_json_init(dohost_json *w, void *buf, size_t cap)
{
    *w = (dohost_json){.buf = buf, .cap = buf ? cap : 0};
}

void dohost_json_init_arena(dohost_json *w)
{
    *w = (dohost_json){.grow = true};
}

bool dohost_json_ok(const dohost_json *w)
{
    return !w->err && w->depth == 0 && !w->after_key && w->len <= w->cap;
}

/* Arena mode: moves the text to a buffer with room for n more bytes (the old one stays
 * in the arena until the event ends; there is no free). */
static bool grow(dohost_json *w, size_t n)
{
    size_t cap = w->cap * 2;
    if (cap < w->len + n)
        cap = w->len + n;
    if (cap < GROW_MIN)
        cap = GROW_MIN;
    char *buf = dohost_alloc(cap);
    if (!buf)
        return false;
    if (w->len)
        __builtin_memcpy(buf, w->buf, w->len);
    w->buf = buf;
    w->cap = cap;
    return true;
}

static void emit(dohost_json *w, const void *p, size_t n)
{
    if (w->err || n == 0)
        return;
    if (w->len > w->cap || n > w->cap - w->len) {
        if (!w->grow) {
            w->len += n; /* fixed buffer: count only, so the caller learns the size */
            return;
        }
        if (!grow(w, n)) {
            w->err = true;
            return;
        }
    }
    __builtin_memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static uint32_t depth_bit(const dohost_json *w)
{
    return 1u << (w->depth - 1);
}

/* The comma between items; none before a member's value or the first item. */
static void before_value(dohost_json *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth == 0)
        return;
    if (w->has_items & depth_bit(w))
        emit(w, ",", 1);
    w->has_items |= depth_bit(w);
}

static void open_container(dohost_json *w, bool object)
{
    before_value(w);
    if (w->depth == DOHOST_JSON_MAX_DEPTH) {
        w->err = true;
        return;
    }
    w->depth++;
    w->has_items &= ~depth_bit(w);
    w->objects = object ? w->objects | depth_bit(w) : w->objects & ~depth_bit(w);
    emit(w, object ? "{" : "[", 1);
}

void dohost_json_object(dohost_json *w)
{
    open_container(w, true);
}

void dohost_json_array(dohost_json *w)
{
    open_container(w, false);
}

void dohost_json_end(dohost_json *w)
{
    if (w->depth == 0 || w->after_key) {
        w->err = true; /* nothing open, or a key without its value */
        return;
    }
    emit(w, (w->objects & depth_bit(w)) ? "}" : "]", 1);
    w->depth--;
}

/* Escapes what JSON requires (quote, backslash, control characters), copying runs of
 * other bytes in one go. */
static void emit_escaped(dohost_json *w, const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        emit(w, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t len = 2;
        if (c == '\n')
            esc[1] = 'n';
        else if (c == '\r')
            esc[1] = 'r';
        else if (c == '\t')
            esc[1] = 't';
        else if (c < 0x20) {
            esc[1] = 'u', esc[2] = '0', esc[3] = '0';
            esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            len = 6;
        }
        emit(w, esc, len);
    }
    emit(w, s + run, n - run);
}

static void emit_string(dohost_json *w, const void *s, size_t n)
{
    emit(w, "\"", 1);
    emit_escaped(w, s, n);
    emit(w, "\"", 1);
}

void dohost_json_key(dohost_json *w, const char *name)
{
    if (w->depth == 0 || !(w->objects & depth_bit(w)) || w->after_key) {
        w->err = true; /* a key belongs in an object, before a value */
        return;
    }
    before_value(w);
    emit_string(w, name, dohost_strlen(name));
    emit(w, ":", 1);
    w->after_key = true;
}

void dohost_json_str(dohost_json *w, const void *s, size_t n)
{
    before_value(w);
    emit_string(w, s, n);
}

void dohost_json_cstr(dohost_json *w, const char *s)
{
    dohost_json_str(w, s, dohost_strlen(s));
}

void dohost_json_int(dohost_json *w, int64_t v)
{
    char digits[DOHOST_I64_CHARS];
    before_value(w);
    emit(w, digits, dohost_fmt_i64(digits, v));
}

void dohost_json_bool(dohost_json *w, bool v)
{
    dohost_json_raw(w, v ? "true" : "false", v ? 4 : 5);
}

void dohost_json_null(dohost_json *w)
{
    dohost_json_raw(w, "null", 4);
}

void dohost_json_raw(dohost_json *w, const void *json, size_t n)
{
    before_value(w);
    emit(w, json, n);
}

int32_t dohost_respond_json(int status, const dohost_json *w)
{
    if (!dohost_json_ok(w))
        return DOHOST_ERR_NO_MEMORY;
    return dohost_respond(status, "application/json", w->buf, w->len);
}

/* ---- Reader ------------------------------------------------------------------------------
 * A validating scanner: every function consumes one syntactic element at r->p and returns
 * false on anything RFC 8259 does not allow. Strings are checked completely while scanning
 * (escapes, surrogate pairs, UTF-8), so decoding one later cannot fail. */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} reader;

static void skip_ws(reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static bool eat(reader *r, uint8_t c)
{
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return true;
    }
    return false;
}

static bool eat_word(reader *r, const char *word)
{
    for (; *word; word++)
        if (!eat(r, (uint8_t)*word))
            return false;
    return true;
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20; /* lower case */
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The 4 hex digits after "\u" at p (p + 4 <= end checked by the caller), or -1. */
static int32_t hex4(const uint8_t *p)
{
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* Length of the valid UTF-8 sequence at p, or 0 (overlong forms, surrogates and code
 * points above U+10FFFF are invalid). */
static size_t utf8_seq(const uint8_t *p, const uint8_t *end)
{
    uint32_t cp, min;
    size_t n;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0)
        n = 2, cp = p[0] & 0x1fu, min = 0x80;
    else if ((p[0] & 0xf0) == 0xe0)
        n = 3, cp = p[0] & 0x0fu, min = 0x800;
    else if ((p[0] & 0xf8) == 0xf0)
        n = 4, cp = p[0] & 0x07u, min = 0x10000;
    else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* One escape after the backslash at r->p; a \u high surrogate must be followed by a \u
 * low surrogate, a lone low surrogate is refused (it has no UTF-8 form). */
static bool scan_escape(reader *r)
{
    r->p++; /* the backslash */
    if (r->p >= r->end)
        return false;
    uint8_t c = *r->p++;
    if (c != 'u')
        return c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
               c == 'r' || c == 't';
    int32_t u = r->end - r->p >= 4 ? hex4(r->p) : -1;
    if (u < 0 || (u >= 0xdc00 && u <= 0xdfff))
        return false;
    r->p += 4;
    if (u < 0xd800 || u > 0xdbff)
        return true;
    int32_t low = r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u' ? hex4(r->p + 2) : -1;
    if (low < 0xdc00 || low > 0xdfff)
        return false;
    r->p += 6;
    return true;
}

/* A string at r->p (its opening quote). *escaped tells whether it contains escapes. */
static bool scan_string(reader *r, bool *escaped)
{
    *escaped = false;
    if (!eat(r, '"'))
        return false;
    while (r->p < r->end) {
        uint8_t c = *r->p;
        if (c == '"') {
            r->p++;
            return true;
        }
        if (c == '\\') {
            *escaped = true;
            if (!scan_escape(r))
                return false;
            continue;
        }
        size_t n = c < 0x20 ? 0 : utf8_seq(r->p, r->end); /* raw control characters: no */
        if (n == 0)
            return false;
        r->p += n;
    }
    return false; /* unterminated */
}

static bool eat_digits(reader *r)
{
    const uint8_t *start = r->p;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
        r->p++;
    return r->p > start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool scan_number(reader *r)
{
    eat(r, '-');
    if (r->p < r->end && *r->p == '0')
        r->p++;
    else if (!eat_digits(r))
        return false;
    if (eat(r, '.') && !eat_digits(r))
        return false;
    if (eat(r, 'e') || eat(r, 'E')) {
        if (!eat(r, '+'))
            eat(r, '-');
        return eat_digits(r);
    }
    return true;
}

static bool scan_value(reader *r, int depth);

/* The members or items of an object or array at r->p (its opening bracket). */
static bool scan_container(reader *r, int depth)
{
    bool object = *r->p == '{', escaped;
    uint8_t close = object ? '}' : ']';
    r->p++;
    skip_ws(r);
    if (eat(r, close))
        return true;
    for (;;) {
        if (object) {
            if (!scan_string(r, &escaped))
                return false;
            skip_ws(r);
            if (!eat(r, ':'))
                return false;
            skip_ws(r);
        }
        if (!scan_value(r, depth))
            return false;
        skip_ws(r);
        if (eat(r, close))
            return true;
        if (!eat(r, ','))
            return false;
        skip_ws(r);
    }
}

/* Any value at r->p; depth counts the containers around it (recursion is bounded). */
static bool scan_value(reader *r, int depth)
{
    bool escaped;
    if (r->p >= r->end)
        return false;
    switch (*r->p) {
    case '"':
        return scan_string(r, &escaped);
    case '{':
    case '[':
        return depth < DOHOST_JSON_MAX_DEPTH && scan_container(r, depth + 1);
    case 't':
        return eat_word(r, "true");
    case 'f':
        return eat_word(r, "false");
    case 'n':
        return eat_word(r, "null");
    default:
        return scan_number(r);
    }
}

static void put_utf8(uint8_t **out, uint32_t cp)
{
    uint8_t *o = *out;
    if (cp < 0x80) {
        *o++ = (uint8_t)cp;
    } else if (cp < 0x800) {
        *o++ = (uint8_t)(0xc0 | cp >> 6);
        *o++ = (uint8_t)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (uint8_t)(0xe0 | cp >> 12);
        *o++ = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        *o++ = (uint8_t)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (uint8_t)(0xf0 | cp >> 18);
        *o++ = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
        *o++ = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        *o++ = (uint8_t)(0x80 | (cp & 0x3f));
    }
    *out = o;
}

/* Unescapes a string that scan_string accepted (raw: with its quotes) into the arena.
 * Unescaping never lengthens the text, so raw.len bytes are enough. */
static bool decode_string(dohost_bytes raw, dohost_bytes *out)
{
    const uint8_t *p = raw.ptr + 1, *end = raw.ptr + raw.len - 1;
    uint8_t *buf = dohost_alloc(raw.len), *o = buf;
    if (!buf)
        return false;
    while (p < end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        uint8_t c = p[1];
        p += 2;
        if (c != 'u') {
            *o++ = c == 'b' ? '\b' : c == 'f' ? '\f' : c == 'n' ? '\n' : c == 'r' ? '\r'
                 : c == 't' ? '\t' : c; /* '"', '\\' and '/' stand for themselves */
            continue;
        }
        uint32_t cp = (uint32_t)hex4(p);
        p += 4;
        if (cp >= 0xd800 && cp <= 0xdbff) { /* a pair, checked by scan_escape */
            cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)hex4(p + 2) - 0xdc00);
            p += 6;
        }
        put_utf8(&o, cp);
    }
    *o = '\0';
    *out = (dohost_bytes){buf, (size_t)(o - buf)};
    return true;
}

/* Whether the member name (raw, with quotes) is `name`. Only escaped names need decoding. */
static int32_t name_is(dohost_bytes raw, bool escaped, const char *name)
{
    dohost_bytes text = {raw.ptr + 1, raw.len - 2};
    if (escaped && !decode_string(raw, &text))
        return DOHOST_ERR_NO_MEMORY;
    size_t n = dohost_strlen(name);
    return text.len == n && (n == 0 || __builtin_memcmp(text.ptr, name, n) == 0);
}

int32_t dohost_json_find(const void *json, size_t len, const char *name, dohost_bytes *raw)
{
    reader r = {json ? json : "", json ? (const uint8_t *)json + len : (const uint8_t *)""};
    bool found = false, escaped;
    skip_ws(&r);
    if (!eat(&r, '{'))
        return DOHOST_ERR_BAD_ENCODING;
    skip_ws(&r);
    bool more = !eat(&r, '}');
    while (more) {
        dohost_bytes key = {r.p, 0};
        if (!scan_string(&r, &escaped))
            return DOHOST_ERR_BAD_ENCODING;
        key.len = (size_t)(r.p - key.ptr);
        skip_ws(&r);
        if (!eat(&r, ':'))
            return DOHOST_ERR_BAD_ENCODING;
        skip_ws(&r);
        const uint8_t *value = r.p;
        if (!scan_value(&r, 1))
            return DOHOST_ERR_BAD_ENCODING;
        int32_t is = name_is(key, escaped, name);
        if (is < 0)
            return is;
        if (is) { /* keep scanning: the rest must be valid too, and the last one wins */
            *raw = (dohost_bytes){value, (size_t)(r.p - value)};
            found = true;
        }
        skip_ws(&r);
        more = eat(&r, ',');
        skip_ws(&r);
        if (!more && !eat(&r, '}'))
            return DOHOST_ERR_BAD_ENCODING;
    }
    skip_ws(&r);
    if (r.p != r.end)
        return DOHOST_ERR_BAD_ENCODING; /* text after the object */
    return found ? 1 : 0;
}

int32_t dohost_json_get_int(const void *json, size_t len, const char *name, int64_t *out)
{
    dohost_bytes raw;
    int32_t st = dohost_json_find(json, len, name, &raw);
    if (st != 1)
        return st;
    for (size_t i = 0; i < raw.len; i++)
        if (raw.ptr[i] != '-' && (raw.ptr[i] < '0' || raw.ptr[i] > '9'))
            return DOHOST_ERR_INVALID_ARGUMENT; /* not a number, or not an integer */
    return dohost_parse_i64(raw.ptr, raw.len, out) ? 1 : DOHOST_ERR_INVALID_ARGUMENT;
}

int32_t dohost_json_get_str(const void *json, size_t len, const char *name, dohost_bytes *out)
{
    dohost_bytes raw;
    int32_t st = dohost_json_find(json, len, name, &raw);
    if (st != 1)
        return st;
    if (raw.ptr[0] != '"')
        return DOHOST_ERR_INVALID_ARGUMENT;
    return decode_string(raw, out) ? 1 : DOHOST_ERR_NO_MEMORY;
}
