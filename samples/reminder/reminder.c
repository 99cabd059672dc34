/*
 * reminder - queues messages and delivers each one when its time comes, using the
 * object's alarm.
 *
 *   POST /remind  {"delay_ms": N, "message": "text"}  -> 201 {"due_ms": D}
 *   GET  /        -> {"delivered": [{"message", "due_ms", "delivered_ms"}, ...], "pending": N}
 *
 * Storage (keys sort by their bytes, so zero-padded numbers sort numerically):
 *   q/<due_ms>/<seq>  a pending reminder; the value is its message. kv_list over "q/"
 *                     yields them in due order (ties: in the order they were queued).
 *   d/<seq>           a delivered reminder, its JSON object pre-rendered; kv_list over
 *                     "d/" yields them in delivery order.
 *   seq               the next sequence number (decimal), shared by both kinds of key.
 *
 * The alarm always points at the earliest pending reminder. When it fires, every reminder
 * due by now moves from q/ to d/ and the alarm moves to the next one, all in one event:
 * the handler's writes commit together or not at all. Alarms are delivered at least once;
 * a second run finds nothing left to move, so nothing is delivered twice.
 */
#include "dohost.h"
#include "json.h"

#define MAX_DELAY_MS 31536000000LL /* 365 days */
#define MAX_MESSAGE 16384          /* bytes of UTF-8 */
#define DIGITS 19                  /* any non-negative int64_t, zero-padded */
#define PAD_KEY_LEN (2 + DIGITS)   /* "q/<due>" or "d/<seq>" */
#define Q_KEY_LEN (PAD_KEY_LEN + 1 + DIGITS) /* "q/<due>/<seq>" */

/* ---- Keys ----------------------------------------------------------------------------- */

/* v (>= 0) in exactly DIGITS digits, so that byte order is numeric order. */
static void put_padded(char *dst, int64_t v)
{
    for (int i = DIGITS - 1; i >= 0; i--, v /= 10)
        dst[i] = (char)('0' + v % 10);
}

/* "<kind>/<v>": a d/ key, or the "q/<due>" start of a q/ key. */
static void pad_key(char *key, char kind, int64_t v)
{
    key[0] = kind;
    key[1] = '/';
    put_padded(key + 2, v);
}

static void q_key(char *key, int64_t due, int64_t seq)
{
    pad_key(key, 'q', due);
    key[PAD_KEY_LEN] = '/';
    put_padded(key + PAD_KEY_LEN + 1, seq);
}

static bool q_key_due(dohost_bytes key, int64_t *due)
{
    return key.len == Q_KEY_LEN && dohost_parse_i64(key.ptr + 2, DIGITS, due);
}

/* The wall clock, never negative (the keys hold non-negative numbers). */
static int64_t clock_ms(void)
{
    int64_t now = dohost_now_ms();
    return now < 0 ? 0 : now;
}

static int32_t load_seq(int64_t *seq)
{
    dohost_bytes v;
    int32_t st = dohost_kv_get(DOHOST_LIT("seq"), &v);
    *seq = 0;
    if (st == DOHOST_ERR_NOT_FOUND)
        return 0;
    if (st < 0)
        return st;
    return dohost_parse_i64(v.ptr, v.len, seq) ? 0 : DOHOST_ERR_BAD_ENCODING;
}

static int32_t store_seq(int64_t seq)
{
    char text[DOHOST_I64_CHARS];
    return dohost_kv_put(DOHOST_LIT("seq"), text, dohost_fmt_i64(text, seq));
}

/* ---- The alarm ------------------------------------------------------------------------ */

/* 1 and the due time of the earliest pending reminder, 0 when none is pending. */
static int32_t earliest_due(int64_t *due)
{
    dohost_list_options opts = {.prefix = "q/", .prefix_len = 2, .limit = 1};
    dohost_list_iter it;
    dohost_bytes key, value;
    int32_t st = dohost_list_begin(&it, &opts);
    if (st >= 0)
        st = dohost_list_next(&it, &key, &value);
    if (st == 1 && !q_key_due(key, due))
        return DOHOST_ERR_BAD_ENCODING;
    return st;
}

/* Points the alarm at the earliest pending reminder (or deletes it when none is pending),
 * touching it only when it changes: every alarm change is written durably. */
static int32_t arm(void)
{
    int64_t due, current;
    int32_t pending = earliest_due(&due);
    if (pending < 0)
        return pending;
    int32_t set = dohost_alarm_get(&current);
    if (set < 0)
        return set;
    if (!pending)
        return set ? dohost_alarm_delete() : 0;
    if (set && current == due)
        return 0;
    return dohost_alarm_set(due);
}

/* The delivered record: {"message":..., "due_ms":..., "delivered_ms":...}. */
static int32_t deliver_one(dohost_bytes q, dohost_bytes message, int64_t now, int64_t seq)
{
    int64_t due;
    dohost_json w;
    char key[PAD_KEY_LEN];
    if (!q_key_due(q, &due))
        return DOHOST_ERR_BAD_ENCODING;
    dohost_json_init_arena(&w);
    dohost_json_object(&w);
    dohost_json_key(&w, "message");
    dohost_json_str(&w, message.ptr, message.len);
    dohost_json_key(&w, "due_ms");
    dohost_json_int(&w, due);
    dohost_json_key(&w, "delivered_ms");
    dohost_json_int(&w, now);
    dohost_json_end(&w);
    if (!dohost_json_ok(&w))
        return DOHOST_ERR_NO_MEMORY;
    pad_key(key, 'd', seq);
    int32_t st = dohost_kv_put(key, sizeof key, w.buf, w.len);
    return st < 0 ? st : dohost_kv_delete(q.ptr, q.len);
}

/* Moves every reminder due by now to the delivered list, then re-arms. Returning
 * non-zero fails the event: nothing moves, and the host retries later. */
static int on_alarm(const dohost_alarm_info *info)
{
    (void)info; /* what is due is decided by the clock, not by the alarm's time */
    int64_t now = clock_ms(), seq;
    char end[PAD_KEY_LEN]; /* "q/<now + 1>": every key before it is due by now */
    dohost_list_options opts = {.prefix = "q/", .prefix_len = 2, .end = end};
    dohost_list_iter it;
    dohost_bytes key, message;
    pad_key(end, 'q', now + 1);
    opts.end_len = sizeof end;
    int32_t st = load_seq(&seq), moved = 0;
    if (st >= 0)
        st = dohost_list_begin(&it, &opts);
    /* Deleting returned keys is safe: the iterator continues after the last key. */
    while (st >= 0 && (st = dohost_list_next(&it, &key, &message)) == 1) {
        st = deliver_one(key, message, now, seq++);
        moved++;
    }
    if (st >= 0 && moved)
        st = store_seq(seq);
    if (st >= 0)
        st = arm();
    return st < 0 ? 1 : 0;
}
DOHOST_EXPORT_ALARM(on_alarm)

/* ---- Responses ------------------------------------------------------------------------- */

/* {"error": "<message>"} */
static bool error_json(dohost_json *w, const char *message)
{
    dohost_json_init_arena(w);
    dohost_json_object(w);
    dohost_json_key(w, "error");
    dohost_json_cstr(w, message);
    dohost_json_end(w);
    return dohost_json_ok(w);
}

static int reply_error(int status, const char *message)
{
    dohost_json w;
    error_json(&w, message);
    return dohost_respond_json(status, &w);
}

/* 405 with the Allow header HTTP asks for. */
static int method_not_allowed(const char *allow)
{
    dohost_json w;
    if (!error_json(&w, "method not allowed"))
        return DOHOST_ERR_NO_MEMORY;
    dohost_header allow_header = {.name = "allow", .value = allow};
    dohost_response r = {.status = 405,
                         .content_type = "application/json",
                         .headers = &allow_header,
                         .header_count = 1,
                         .body = w.buf,
                         .body_len = w.len};
    return dohost_respond_with(&r);
}

/* ---- Routes ---------------------------------------------------------------------------- */

/* Reads and checks the body. Returns 1 when valid, 0 after answering 400, or a status. */
static int32_t parse_remind(const dohost_request *req, int64_t *delay, dohost_bytes *message)
{
    int32_t st = dohost_json_get_int(req->body, req->body_len, "delay_ms", delay);
    if (st == DOHOST_ERR_BAD_ENCODING)
        return reply_error(400, "the body must be a JSON object");
    if (st == DOHOST_ERR_NO_MEMORY)
        return st;
    if (st != 1 || *delay < 0 || *delay > MAX_DELAY_MS)
        return reply_error(400, "delay_ms must be an integer from 0 to 31536000000");
    st = dohost_json_get_str(req->body, req->body_len, "message", message);
    if (st == DOHOST_ERR_NO_MEMORY)
        return st;
    if (st != 1)
        return reply_error(400, "message must be a string");
    if (message->len > MAX_MESSAGE)
        return reply_error(400, "message must be at most 16384 bytes");
    return 1;
}

static int remind(const dohost_request *req)
{
    int64_t delay, seq;
    dohost_bytes message;
    char key[Q_KEY_LEN];
    int32_t st = parse_remind(req, &delay, &message);
    if (st != 1)
        return st; /* 0: the 400 is set; < 0: fail the event */
    int64_t due = clock_ms() + delay;
    st = load_seq(&seq);
    if (st < 0)
        return st;
    q_key(key, due, seq);
    if ((st = dohost_kv_put(key, sizeof key, message.ptr, message.len)) < 0 ||
        (st = store_seq(seq + 1)) < 0 || (st = arm()) < 0)
        return st;
    dohost_json w;
    dohost_json_init_arena(&w);
    dohost_json_object(&w);
    dohost_json_key(&w, "due_ms");
    dohost_json_int(&w, due);
    dohost_json_end(&w);
    return dohost_respond_json(201, &w);
}

/* Appends the values under a prefix (pre-rendered JSON) to an array, or only counts them
 * when w is NULL. Returns the count or a negative status. */
static int32_t each_under(const char *prefix, dohost_json *w)
{
    dohost_list_options opts = {.prefix = prefix, .prefix_len = dohost_strlen(prefix)};
    dohost_list_iter it;
    dohost_bytes key, value;
    int32_t st = dohost_list_begin(&it, &opts), count = 0;
    while (st >= 0 && (st = dohost_list_next(&it, &key, &value)) == 1) {
        if (w)
            dohost_json_raw(w, value.ptr, value.len);
        count++;
    }
    return st < 0 ? st : count;
}

static int show(void)
{
    dohost_json w;
    dohost_json_init_arena(&w);
    dohost_json_object(&w);
    dohost_json_key(&w, "delivered");
    dohost_json_array(&w);
    int32_t st = each_under("d/", &w);
    if (st < 0)
        return st;
    dohost_json_end(&w);
    int32_t pending = each_under("q/", NULL);
    if (pending < 0)
        return pending;
    dohost_json_key(&w, "pending");
    dohost_json_int(&w, pending);
    dohost_json_end(&w);
    return dohost_respond_json(200, &w);
}

int on_fetch(const dohost_request *req)
{
    if (dohost_path_is(req, "/"))
        return dohost_method_is(req, "GET") ? show() : method_not_allowed("GET");
    if (dohost_path_is(req, "/remind"))
        return dohost_method_is(req, "POST") ? remind(req) : method_not_allowed("POST");
    return reply_error(404, "not found");
}
