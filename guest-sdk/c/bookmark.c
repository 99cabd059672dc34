/*
 * bookmark.c - bookmarks (see bookmark.h; abi/README.md section 5, "Bookmarks").
 */
#include "bookmark.h"

static int32_t raw_current(const void *ctx, void *buf, size_t cap)
{
    (void)ctx;
    return dohost_raw_bookmark_current(buf, cap);
}

static int32_t raw_for_time(const void *ctx, void *buf, size_t cap)
{
    return dohost_raw_bookmark_for_time(*(const int64_t *)ctx, buf, cap);
}

static int32_t take(dohost__output_fn fn, const void *ctx, dohost_bookmark *out)
{
    dohost_bytes res;
    out->text[0] = '\0';
    int32_t st = dohost__output(fn, ctx, &res);
    if (st < 0)
        return st;
    if (res.len > DOHOST_BOOKMARK_LEN)
        return DOHOST_ERR_SDK_DECODE;
    if (res.len)
        __builtin_memcpy(out->text, res.ptr, res.len);
    out->text[res.len] = '\0';
    return 0;
}

int32_t dohost_bookmark_current(dohost_bookmark *out)
{
    return take(raw_current, NULL, out);
}

int32_t dohost_bookmark_for_time(int64_t time_ms, dohost_bookmark *out)
{
    return take(raw_for_time, &time_ms, out);
}

int32_t dohost_bookmark_restore(const char *bookmark)
{
    return dohost_raw_bookmark_restore(bookmark, bookmark ? dohost_strlen(bookmark) : 0);
}
