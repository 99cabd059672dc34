/*
 * pipeline - the coordinator of a CI pipeline: one object per pipeline (class "pipeline",
 * addressed by name). It numbers runs, lets at most `max_in_flight` of them run at once
 * and queues the rest. Each run is an object of class "run" named "<pipeline>/<number>"
 * (samples/pipeline/run.c) that tracks its own stages; when it finishes it calls back
 * POST /runs/<n>/finished here, and the next queued run starts.
 *
 *   PUT  /config   {"max_in_flight": N, "stages": "build,test,deploy",
 *                   "stage_timeout_ms": T}           (every member optional) -> 200 config
 *   POST /runs     {"commit": "..."} (optional)      -> 201 {"run", "state", "object"}
 *   POST /runs/<n>/finished {"state": "succeeded" | "failed", "reason": "..."}
 *                  accepted only from the run object itself (the host's caller headers)
 *   GET  /runs/<n> -> the run as the pipeline sees it
 *   GET  /         -> {"pipeline", "config", "in_flight", "queued": [n...], "runs": [...]}
 *
 * Storage:
 *   cfg/max, cfg/stages, cfg/timeout   the configuration (defaults below)
 *   next                               the next run number (from 1)
 *   in_flight                          runs started and not finished
 *   r/<n>/state, r/<n>/commit, r/<n>/reason   each run (n zero-padded: listing is in order)
 *   q/<n>                              queued runs, oldest first
 *   s/<n>                              runs being started (see below)
 *
 * Starting a run is a call to the run object, and a call is a commit point: before the
 * run can exist, this pipeline has durably counted it in flight and marked it
 * "starting" (s/<n>), and set its alarm a little later. The run's /start is idempotent.
 * So if the host fails around the call, the alarm sends /start again for every run still
 * "starting": a run never runs without being counted, nor stays counted without running.
 */
#include "common.h"

#define DEFAULT_MAX_IN_FLIGHT 2
#define DEFAULT_STAGES "build,test,deploy"
#define DEFAULT_STAGE_TIMEOUT_MS 600000 /* 10 minutes */
#define MAX_IN_FLIGHT_LIMIT 1000
#define MAX_TIMEOUT_MS 86400000 /* a day */
#define MAX_COMMIT 200
#define START_RETRY_MS 10000 /* when a start that did not complete is tried again */

/* This pipeline's name, NULL when it was addressed by id (runs are named after it). */
static const char *my_name(void)
{
    dohost_object_ref me;
    return dohost_self(&me) == 0 ? me.name : NULL;
}

static const char *run_object(const char *me, int64_t n)
{
    text t = {0};
    put_str(&t, me);
    put_str(&t, "/");
    put_int(&t, n);
    return t.oom ? NULL : t.buf;
}

/* ---- Starting runs --------------------------------------------------------------------- */

/* Calls run object <me>/<n> with POST /start (the run was marked "starting" and counted
 * in flight); records "running", or "failed" and why. */
static int32_t send_start(const char *me, int64_t n)
{
    const char *name = run_object(me, n), *commit = get_str(num_key("r/", n, "/commit"), "");
    dohost_json w;
    dohost_json_init_arena(&w);
    dohost_json_object(&w);
    dohost_json_key(&w, "pipeline");
    dohost_json_cstr(&w, me);
    dohost_json_key(&w, "run");
    dohost_json_int(&w, n);
    dohost_json_key(&w, "stages");
    dohost_json_cstr(&w, get_str("cfg/stages", DEFAULT_STAGES));
    dohost_json_key(&w, "stage_timeout_ms");
    dohost_json_int(&w, get_int("cfg/timeout", DEFAULT_STAGE_TIMEOUT_MS));
    dohost_json_key(&w, "commit");
    dohost_json_cstr(&w, commit);
    dohost_json_end(&w);
    if (!name || !dohost_json_ok(&w))
        return DOHOST_ERR_NO_MEMORY;
    dohost_call_request req = {.method = "POST", .path = "/start", .body = w.buf,
                               .body_len = w.len};
    dohost_call_response resp;
    int32_t status = dohost_call("run", name, &req, &resp);
    const char *state_key = num_key("r/", n, "/state");
    int32_t st = dohost_kv_delete(num_key("s/", n, ""), 2 + NUM_DIGITS);
    if (st < 0)
        return st;
    if (status == 201 || status == 200) /* 200: it had started already */
        return put_str_key(state_key, "running");
    /* The run could not start: it failed, and takes no slot. */
    text reason = {0};
    put_str(&reason, "could not start the run: ");
    if (status < 0) {
        dohost_error err;
        put_str(&reason, dohost_last_error(&err) == 0 ? err.message : dohost_status_name(status));
    } else {
        put_str(&reason, "status ");
        put_int(&reason, status);
    }
    st = put_str_key(state_key, "failed");
    if (st >= 0)
        st = put_int_key("in_flight", get_int("in_flight", 1) - 1);
    return st < 0 ? st : put_str_key(num_key("r/", n, "/reason"), reason.oom ? "" : reason.buf);
}

/* Counts run n in flight and starts it (see the top of the file). */
static int32_t start_run(const char *me, int64_t n)
{
    int32_t st = put_str_key(num_key("r/", n, "/state"), "starting");
    if (st >= 0)
        st = dohost_kv_put(num_key("s/", n, ""), 2 + NUM_DIGITS, "", 0);
    if (st >= 0)
        st = put_int_key("in_flight", get_int("in_flight", 0) + 1);
    if (st >= 0)
        st = dohost_alarm_set(dohost_now_ms() + START_RETRY_MS);
    return st < 0 ? st : send_start(me, n);
}

/* The alarm: send /start again to runs whose start did not complete. */
static int on_alarm(const dohost_alarm_info *info)
{
    (void)info;
    const char *me = my_name();
    dohost_list_options opts = {.prefix = "s/", .prefix_len = 2};
    dohost_list_iter it;
    dohost_bytes key, value;
    int64_t n;
    if (!me)
        return 0;
    int32_t st = dohost_list_begin(&it, &opts);
    while (st >= 0 && (st = dohost_list_next(&it, &key, &value)) == 1)
        if (dohost_parse_i64(key.ptr + 2, key.len - 2, &n))
            st = send_start(me, n);
    return st < 0;
}
DOHOST_EXPORT_ALARM(on_alarm)

/* Starts queued runs, oldest first, while there is room. */
static int32_t start_queued(const char *me)
{
    int64_t max = get_int("cfg/max", DEFAULT_MAX_IN_FLIGHT);
    while (get_int("in_flight", 0) < max) {
        dohost_list_options opts = {.prefix = "q/", .prefix_len = 2, .limit = 1};
        dohost_list_iter it;
        dohost_bytes key, value;
        int64_t n;
        int32_t st = dohost_list_begin(&it, &opts);
        if (st >= 0)
            st = dohost_list_next(&it, &key, &value);
        if (st <= 0)
            return st;
        if (!dohost_parse_i64(key.ptr + 2, key.len - 2, &n))
            return DOHOST_ERR_BAD_ENCODING;
        st = dohost_kv_delete(key.ptr, key.len);
        if (st >= 0)
            st = start_run(me, n);
        if (st < 0)
            return st;
    }
    return 0;
}

/* ---- Answers ----------------------------------------------------------------------------- */

static void write_run(dohost_json *w, const char *me, int64_t n)
{
    const char *reason = get_str(num_key("r/", n, "/reason"), NULL);
    dohost_json_object(w);
    dohost_json_key(w, "run");
    dohost_json_int(w, n);
    dohost_json_key(w, "state");
    dohost_json_cstr(w, get_str(num_key("r/", n, "/state"), "unknown"));
    dohost_json_key(w, "commit");
    dohost_json_cstr(w, get_str(num_key("r/", n, "/commit"), ""));
    if (reason) {
        dohost_json_key(w, "reason");
        dohost_json_cstr(w, reason);
    }
    dohost_json_key(w, "object");
    dohost_json_cstr(w, run_object(me, n));
    dohost_json_end(w);
}

static int reply_run(int status, const char *me, int64_t n)
{
    dohost_json w;
    dohost_json_init_arena(&w);
    write_run(&w, me, n);
    return dohost_respond_json(status, &w);
}

static void write_config(dohost_json *w)
{
    dohost_json_object(w);
    dohost_json_key(w, "max_in_flight");
    dohost_json_int(w, get_int("cfg/max", DEFAULT_MAX_IN_FLIGHT));
    dohost_json_key(w, "stages");
    dohost_json_cstr(w, get_str("cfg/stages", DEFAULT_STAGES));
    dohost_json_key(w, "stage_timeout_ms");
    dohost_json_int(w, get_int("cfg/timeout", DEFAULT_STAGE_TIMEOUT_MS));
    dohost_json_end(w);
}

static int route_state(const char *me)
{
    dohost_json w;
    dohost_list_iter it;
    dohost_bytes key, value;
    int64_t n;
    dohost_json_init_arena(&w);
    dohost_json_object(&w);
    dohost_json_key(&w, "pipeline");
    dohost_json_cstr(&w, me);
    dohost_json_key(&w, "config");
    write_config(&w);
    dohost_json_key(&w, "in_flight");
    dohost_json_int(&w, get_int("in_flight", 0));
    dohost_json_key(&w, "queued");
    dohost_json_array(&w);
    dohost_list_options q = {.prefix = "q/", .prefix_len = 2};
    int32_t st = dohost_list_begin(&it, &q);
    while (st >= 0 && (st = dohost_list_next(&it, &key, &value)) == 1)
        if (dohost_parse_i64(key.ptr + 2, key.len - 2, &n))
            dohost_json_int(&w, n);
    dohost_json_end(&w);
    dohost_json_key(&w, "runs");
    dohost_json_array(&w);
    /* r/<n>/state exists for every run: list those keys, one per run, in run order. */
    dohost_list_options r = {.prefix = "r/", .prefix_len = 2};
    if (st >= 0)
        st = dohost_list_begin(&it, &r);
    while (st >= 0 && (st = dohost_list_next(&it, &key, &value)) == 1)
        if (key.len == 2 + NUM_DIGITS + 6 &&
            __builtin_memcmp(key.ptr + 2 + NUM_DIGITS, "/state", 6) == 0 &&
            dohost_parse_i64(key.ptr + 2, NUM_DIGITS, &n))
            write_run(&w, me, n);
    dohost_json_end(&w);
    dohost_json_end(&w);
    return st < 0 ? st : dohost_respond_json(200, &w);
}

/* ---- Routes ------------------------------------------------------------------------------ */

static int route_config(const dohost_request *req, const char *me)
{
    const char *body = (const char *)req->body;
    size_t len = req->body_len;
    int64_t max, timeout;
    dohost_bytes stages;
    dohost_bytes spans[MAX_STAGES];
    int32_t st = dohost_json_get_int(body, len, "max_in_flight", &max);
    if (st < 0 || (st == 1 && (max < 1 || max > MAX_IN_FLIGHT_LIMIT)))
        return reply_error(400, "max_in_flight must be an integer from 1 to 1000");
    if (st == 1 && (st = put_int_key("cfg/max", max)) < 0)
        return st;
    st = dohost_json_get_int(body, len, "stage_timeout_ms", &timeout);
    if (st < 0 || (st == 1 && (timeout < 1 || timeout > MAX_TIMEOUT_MS)))
        return reply_error(400, "stage_timeout_ms must be an integer from 1 to 86400000");
    if (st == 1 && (st = put_int_key("cfg/timeout", timeout)) < 0)
        return st;
    st = dohost_json_get_str(body, len, "stages", &stages);
    if (st < 0 || (st == 1 && split_stages((const char *)stages.ptr, spans) == 0))
        return reply_error(400, "stages must be a string of 1 to 16 comma-separated names of "
                                "a-z, 0-9, _ and - (at most 32 characters each)");
    if (st == 1 && (st = put_str_key("cfg/stages", (const char *)stages.ptr)) < 0)
        return st;
    /* Runs already started keep the stages and timeout they started with. */
    st = start_queued(me);
    if (st < 0)
        return st;
    dohost_json w;
    dohost_json_init_arena(&w);
    write_config(&w);
    return dohost_respond_json(200, &w);
}

static int route_new_run(const dohost_request *req, const char *me)
{
    dohost_bytes commit = {(const uint8_t *)"", 0};
    if (req->body_len) {
        int32_t st = dohost_json_get_str(req->body, req->body_len, "commit", &commit);
        if (st < 0 || commit.len > MAX_COMMIT)
            return reply_error(400, "the body is an optional JSON object; commit a string "
                                    "of at most 200 bytes");
    }
    int64_t n = get_int("next", 1);
    int32_t st = put_int_key("next", n + 1);
    if (st >= 0)
        st = put_str_key(num_key("r/", n, "/state"), "queued");
    if (st >= 0 && commit.len)
        st = dohost_kv_put(num_key("r/", n, "/commit"), 2 + NUM_DIGITS + 7, commit.ptr,
                           commit.len);
    if (st >= 0)
        st = dohost_kv_put(num_key("q/", n, ""), 2 + NUM_DIGITS, "", 0);
    if (st >= 0)
        st = start_queued(me); /* starts this one if there is room (the queue is in order) */
    return st < 0 ? st : reply_run(201, me, n);
}

static int route_finished(const dohost_request *req, const char *me, int64_t n)
{
    dohost_object_ref caller;
    const char *expected = run_object(me, n);
    if (!dohost_caller(req, &caller) || !dohost_streq(caller.class_name, "run") ||
        !caller.name || !expected || !dohost_streq(caller.name, expected))
        return reply_error(403, "only the run object itself reports that it finished");
    const char *state_key = num_key("r/", n, "/state");
    const char *state = get_str(state_key, NULL);
    if (!state)
        return reply_error(404, "no such run");
    /* "starting": the run started but its answer was lost (the alarm would resend). */
    bool starting = dohost_streq(state, "starting");
    if (!starting && !dohost_streq(state, "running")) /* told twice: done already */
        return reply_run(200, me, n);
    dohost_bytes outcome, reason;
    if (dohost_json_get_str(req->body, req->body_len, "state", &outcome) != 1 ||
        !(dohost_streq((const char *)outcome.ptr, "succeeded") ||
          dohost_streq((const char *)outcome.ptr, "failed")))
        return reply_error(400, "state must be \"succeeded\" or \"failed\"");
    int32_t st = put_str_key(state_key, (const char *)outcome.ptr);
    if (st >= 0 && dohost_json_get_str(req->body, req->body_len, "reason", &reason) == 1)
        st = dohost_kv_put(num_key("r/", n, "/reason"), 2 + NUM_DIGITS + 7, reason.ptr,
                           reason.len);
    if (st >= 0 && starting)
        st = dohost_kv_delete(num_key("s/", n, ""), 2 + NUM_DIGITS);
    if (st >= 0)
        st = put_int_key("in_flight", get_int("in_flight", 1) - 1);
    /* A call from here to the next run is fine: the calling run is not that one, so no
     * object in this call chain is called twice. */
    if (st >= 0)
        st = start_queued(me);
    return st < 0 ? st : reply_run(200, me, n);
}

int on_fetch(const dohost_request *req)
{
    const char *me = my_name();
    int64_t n;
    if (!me)
        return reply_error(400, "address a pipeline by name: its runs are named after it");
    if (dohost_path_is(req, "/"))
        return dohost_method_is(req, "GET") ? route_state(me)
                                            : reply_error(405, "method not allowed");
    if (dohost_path_is(req, "/config"))
        return dohost_method_is(req, "PUT") ? route_config(req, me)
                                            : reply_error(405, "method not allowed");
    if (dohost_path_is(req, "/runs"))
        return dohost_method_is(req, "POST") ? route_new_run(req, me)
                                             : reply_error(405, "method not allowed");
    if (match_num(req->path, "/runs/", "/finished", &n))
        return dohost_method_is(req, "POST") ? route_finished(req, me, n)
                                             : reply_error(405, "method not allowed");
    if (match_num(req->path, "/runs/", "", &n)) {
        if (!dohost_method_is(req, "GET"))
            return reply_error(405, "method not allowed");
        return get_str(num_key("r/", n, "/state"), NULL) ? reply_run(200, me, n)
                                                         : reply_error(404, "no such run");
    }
    return reply_error(404, "not found");
}
