/*
 * run - one run of a CI pipeline (class "run", named "<pipeline>/<number>"; started by
 * samples/pipeline/pipeline.c). It walks its stages in order; each stage has a timeout,
 * kept as the object's alarm. When the run finishes (all stages done, a stage failed or
 * timed out) it calls back its pipeline with POST /runs/<n>/finished.
 *
 *   POST /start                 from the pipeline only: {"pipeline", "run", "stages",
 *                               "stage_timeout_ms", "commit"}            -> 201 the run
 *   POST /stages/<stage>/done   the running stage succeeded: the next one starts, or the
 *                               run succeeded                              -> 200 the run
 *   POST /stages/<stage>/failed {"reason": "..."} (optional): the run failed -> 200 the run
 *   GET  /                      -> {"pipeline", "run", "state", "commit", "current_stage",
 *                                   "deadline_ms", "stages": [{"name", "state"}], ...}
 *   A stage that is not the running one: 409.
 *
 * Storage: pipeline, run, stages, timeout, commit, state (running | succeeded | failed),
 * cur (index of the running stage), st/<i> (pending | running | done | failed |
 * timed_out), deadline, reason, notified ("1" once the pipeline took the result).
 *
 * The callback is a call, so a commit point: the run's final state is durable before the
 * pipeline hears of it. If the call fails, the alarm retries it (and the pipeline
 * accepts a repeated report), so the pipeline learns of every finished run.
 */
#include "common.h"

#define NOTIFY_RETRY_MS 1000

static int64_t now_ms(void)
{
    return dohost_now_ms();
}

static const char *stage_key(int64_t i)
{
    text t = {0};
    put_str(&t, "st/");
    put_int(&t, i);
    return t.oom ? NULL : t.buf;
}

/* The stage names of this run (from storage). */
static size_t load_stages(dohost_bytes *spans)
{
    return split_stages(get_str("stages", ""), spans);
}

/* ---- Telling the pipeline ---------------------------------------------------------------- */

/* 1 when the pipeline took the result, 0 when not (the alarm will try again). */
static int32_t notify(void)
{
    text path = {0};
    put_str(&path, "/runs/");
    put_int(&path, get_int("run", 0));
    put_str(&path, "/finished");
    dohost_json w;
    dohost_json_init_arena(&w);
    dohost_json_object(&w);
    dohost_json_key(&w, "state");
    dohost_json_cstr(&w, get_str("state", "failed"));
    const char *reason = get_str("reason", NULL);
    if (reason) {
        dohost_json_key(&w, "reason");
        dohost_json_cstr(&w, reason);
    }
    dohost_json_end(&w);
    if (path.oom || !dohost_json_ok(&w))
        return DOHOST_ERR_NO_MEMORY;
    dohost_call_request req = {.method = "POST", .path = path.buf, .body = w.buf,
                               .body_len = w.len};
    int32_t status = dohost_call("pipeline", get_str("pipeline", ""), &req, NULL);
    if (status == 200) {
        int32_t st = put_str_key("notified", "1");
        return st < 0 ? st : 1;
    }
    text msg = {0};
    put_str(&msg, "could not report to the pipeline: ");
    put_int(&msg, status);
    dohost_log_warn(msg.oom ? "could not report to the pipeline" : msg.buf);
    return 0;
}

/* The run ends: record it, stop the stage timer, tell the pipeline (or arrange a retry). */
static int32_t finish(const char *state, const char *reason)
{
    int32_t st = put_str_key("state", state);
    if (st >= 0 && reason)
        st = put_str_key("reason", reason);
    if (st >= 0)
        st = dohost_alarm_delete();
    if (st < 0)
        return st;
    st = notify();
    if (st == 0) /* not taken: the alarm handler tries again */
        st = dohost_alarm_set(now_ms() + NOTIFY_RETRY_MS);
    return st < 0 ? st : 0;
}

/* Starts stage i: its state and its timeout. */
static int32_t start_stage(int64_t i)
{
    int64_t deadline = now_ms() + get_int("timeout", 1);
    int32_t st = put_int_key("cur", i);
    if (st >= 0)
        st = put_str_key(stage_key(i), "running");
    if (st >= 0)
        st = put_int_key("deadline", deadline);
    return st < 0 ? st : dohost_alarm_set(deadline);
}

/* ---- Answers ------------------------------------------------------------------------------ */

static int reply_run(int status)
{
    dohost_bytes spans[MAX_STAGES];
    size_t n = load_stages(spans);
    int64_t cur = get_int("cur", 0);
    const char *state = get_str("state", "new");
    dohost_json w;
    dohost_json_init_arena(&w);
    dohost_json_object(&w);
    dohost_json_key(&w, "pipeline");
    dohost_json_cstr(&w, get_str("pipeline", ""));
    dohost_json_key(&w, "run");
    dohost_json_int(&w, get_int("run", 0));
    dohost_json_key(&w, "state");
    dohost_json_cstr(&w, state);
    dohost_json_key(&w, "commit");
    dohost_json_cstr(&w, get_str("commit", ""));
    dohost_json_key(&w, "current_stage");
    if (dohost_streq(state, "running") && (size_t)cur < n)
        dohost_json_str(&w, spans[cur].ptr, spans[cur].len);
    else
        dohost_json_null(&w);
    if (dohost_streq(state, "running")) {
        dohost_json_key(&w, "deadline_ms");
        dohost_json_int(&w, get_int("deadline", 0));
    }
    const char *reason = get_str("reason", NULL);
    if (reason) {
        dohost_json_key(&w, "reason");
        dohost_json_cstr(&w, reason);
    }
    dohost_json_key(&w, "reported");
    dohost_json_bool(&w, get_str("notified", NULL) != NULL);
    dohost_json_key(&w, "stages");
    dohost_json_array(&w);
    for (size_t i = 0; i < n; i++) {
        dohost_json_object(&w);
        dohost_json_key(&w, "name");
        dohost_json_str(&w, spans[i].ptr, spans[i].len);
        dohost_json_key(&w, "state");
        dohost_json_cstr(&w, get_str(stage_key((int64_t)i), "pending"));
        dohost_json_end(&w);
    }
    dohost_json_end(&w);
    dohost_json_end(&w);
    return dohost_respond_json(status, &w);
}

/* ---- Routes ------------------------------------------------------------------------------- */

static int route_start(const dohost_request *req)
{
    dohost_object_ref caller, me;
    if (!dohost_caller(req, &caller) || !dohost_streq(caller.class_name, "pipeline") ||
        !caller.name)
        return reply_error(403, "runs are started by their pipeline (POST /runs there)");
    if (get_str("state", NULL))
        return reply_run(200); /* started already */
    const char *body = (const char *)req->body;
    size_t len = req->body_len;
    dohost_bytes pipeline, stages, commit = {(const uint8_t *)"", 0};
    dohost_bytes spans[MAX_STAGES];
    int64_t run, timeout;
    if (dohost_json_get_str(body, len, "pipeline", &pipeline) != 1 ||
        dohost_json_get_int(body, len, "run", &run) != 1 ||
        dohost_json_get_str(body, len, "stages", &stages) != 1 ||
        dohost_json_get_int(body, len, "stage_timeout_ms", &timeout) != 1 || timeout < 1 ||
        split_stages((const char *)stages.ptr, spans) == 0 ||
        dohost_json_get_str(body, len, "commit", &commit) < 0)
        return reply_error(400, "bad start request");
    /* The pipeline that calls must be the one this run is named after: "<pipeline>/<n>". */
    text expected = {0};
    put_str(&expected, caller.name);
    put_str(&expected, "/");
    put_int(&expected, run);
    if (dohost_self(&me) < 0 || !me.name || expected.oom || !dohost_streq(me.name, expected.buf) ||
        !dohost_streq((const char *)pipeline.ptr, caller.name))
        return reply_error(403, "this run belongs to another pipeline");
    int32_t st = put_str_key("pipeline", (const char *)pipeline.ptr);
    if (st >= 0)
        st = put_int_key("run", run);
    if (st >= 0)
        st = put_str_key("stages", (const char *)stages.ptr);
    if (st >= 0)
        st = put_int_key("timeout", timeout);
    if (st >= 0)
        st = dohost_kv_put(DOHOST_LIT("commit"), commit.ptr, commit.len);
    if (st >= 0)
        st = put_str_key("state", "running");
    if (st >= 0)
        st = start_stage(0);
    return st < 0 ? st : reply_run(201);
}

/* POST /stages/<name>/done or /failed */
static int route_stage(const dohost_request *req)
{
    const char *p = req->path + 8; /* after "/stages/" */
    const char *slash = p;
    while (*slash && *slash != '/')
        slash++;
    bool done = dohost_streq(slash, "/done"), failed = dohost_streq(slash, "/failed");
    if (!done && !failed)
        return reply_error(404, "not found");
    if (!dohost_method_is(req, "POST"))
        return reply_error(405, "method not allowed");
    const char *state = get_str("state", NULL);
    if (!state)
        return reply_error(404, "this run was never started");
    if (!dohost_streq(state, "running"))
        return reply_error(409, "the run has finished");
    dohost_bytes spans[MAX_STAGES];
    size_t n = load_stages(spans);
    int64_t cur = get_int("cur", 0);
    size_t name_len = (size_t)(slash - p);
    if ((size_t)cur >= n || spans[cur].len != name_len ||
        __builtin_memcmp(spans[cur].ptr, p, name_len) != 0)
        return reply_error(409, "that stage is not the running one (see GET /)");
    int32_t st;
    if (failed) {
        dohost_bytes why;
        text reason = {0};
        put_str(&reason, "stage ");
        put_bytes(&reason, p, name_len);
        put_str(&reason, " failed");
        if (req->body_len &&
            dohost_json_get_str(req->body, req->body_len, "reason", &why) == 1) {
            put_str(&reason, ": ");
            put_bytes(&reason, why.ptr, why.len);
        }
        st = put_str_key(stage_key(cur), "failed");
        if (st >= 0)
            st = finish("failed", reason.oom ? "stage failed" : reason.buf);
    } else {
        st = put_str_key(stage_key(cur), "done");
        if (st >= 0)
            st = (size_t)cur + 1 < n ? start_stage(cur + 1) : finish("succeeded", NULL);
    }
    return st < 0 ? st : reply_run(200);
}

int on_fetch(const dohost_request *req)
{
    if (dohost_path_is(req, "/"))
        return dohost_method_is(req, "GET") ? reply_run(200)
                                            : reply_error(405, "method not allowed");
    if (dohost_path_is(req, "/start"))
        return dohost_method_is(req, "POST") ? route_start(req)
                                             : reply_error(405, "method not allowed");
    if (req->path_len > 8 && __builtin_memcmp(req->path, "/stages/", 8) == 0)
        return route_stage(req);
    return reply_error(404, "not found");
}

/* ---- The alarm: the running stage's timeout, or a report to retry -------------------------- */

static int on_alarm(const dohost_alarm_info *info)
{
    (void)info;
    const char *state = get_str("state", NULL);
    if (!state)
        return 0;
    if (!dohost_streq(state, "running")) {
        if (get_str("notified", NULL))
            return 0;
        int32_t st = notify();
        return st == 1 ? 0 : 1; /* not taken: the host retries the alarm with backoff */
    }
    int64_t deadline = get_int("deadline", 0);
    if (now_ms() < deadline) /* early (the stage changed since): wait for its deadline */
        return dohost_alarm_set(deadline) < 0;
    dohost_bytes spans[MAX_STAGES];
    size_t n = load_stages(spans);
    int64_t cur = get_int("cur", 0);
    text reason = {0};
    put_str(&reason, "stage ");
    if ((size_t)cur < n)
        put_bytes(&reason, spans[cur].ptr, spans[cur].len);
    put_str(&reason, " timed out after ");
    put_int(&reason, get_int("timeout", 0));
    put_str(&reason, " ms");
    int32_t st = put_str_key(stage_key(cur), "timed_out");
    if (st >= 0)
        st = finish("failed", reason.oom ? "stage timed out" : reason.buf);
    return st < 0;
}
DOHOST_EXPORT_ALARM(on_alarm)
