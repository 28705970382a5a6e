/* vi_receipt.c: bounds-checked msgpack reading of a receipt. See vi_receipt.h. */
#include "vi_receipt.h"

#include "vi_encode.h" /* vi_utf8_valid */

/* A cursor over [p, end). Every read checks the bytes left before it touches them. */
typedef struct {
    const uint8_t *start, *p, *end;
    size_t error_offset;
} rd;

static int fail(rd *r, const uint8_t *at, int code) {
    r->error_offset = (size_t)(at - r->start);
    return code;
}

static size_t left(const rd *r) { return (size_t)(r->end - r->p); }

static uint64_t be(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    while (n--) v = (v << 8) | *p++;
    return v;
}

/* Width of the big-endian field after a type byte: 1, 2, 4, 8 for 0xcc/0xd0.. family members. */
static unsigned width(uint8_t t, uint8_t first) { return 1u << (t - first); }

/* An unsigned value in any msgpack int encoding; a signed encoding must hold a value >= 0. */
static int rd_uint(rd *r, uint64_t *v) {
    const uint8_t *at = r->p;
    uint8_t t;
    unsigned n;
    if (left(r) < 1) return fail(r, at, VI_RCPT_ERR_TRUNCATED);
    t = *r->p;
    if (t <= 0x7f) {
        *v = t;
        r->p++;
        return 0;
    }
    if (t >= 0xcc && t <= 0xcf) {
        n = width(t, 0xcc);
    } else if (t >= 0xd0 && t <= 0xd3) {
        n = width(t, 0xd0);
    } else {
        return fail(r, at, VI_RCPT_ERR_TYPE); /* includes negative fixint, nil, bool, float, str... */
    }
    if (left(r) < 1 + (size_t)n) return fail(r, at, VI_RCPT_ERR_TRUNCATED);
    *v = be(r->p + 1, n);
    if (t >= 0xd0 && (r->p[1] & 0x80)) return fail(r, at, VI_RCPT_ERR_TYPE); /* negative */
    r->p += 1 + n;
    return 0;
}

/* An array header; its count may not exceed the bytes left (every element takes at least one). */
static int rd_array(rd *r, size_t *count) {
    const uint8_t *at = r->p;
    uint8_t t;
    unsigned n;
    uint64_t c;
    if (left(r) < 1) return fail(r, at, VI_RCPT_ERR_TRUNCATED);
    t = *r->p;
    if ((t & 0xf0) == 0x90) {
        c = t & 0x0fu;
        n = 0;
    } else if (t == 0xdc || t == 0xdd) {
        n = t == 0xdc ? 2 : 4;
    } else {
        return fail(r, at, VI_RCPT_ERR_TYPE);
    }
    if (left(r) < 1 + (size_t)n) return fail(r, at, VI_RCPT_ERR_TRUNCATED);
    if (n) c = be(r->p + 1, n);
    r->p += 1 + n;
    if (c > left(r)) return fail(r, at, VI_RCPT_ERR_TRUNCATED);
    *count = (size_t)c;
    return 0;
}

static int rd_str(rd *r, const uint8_t **s, size_t *len) {
    const uint8_t *at = r->p;
    uint8_t t;
    unsigned n;
    uint64_t c;
    if (left(r) < 1) return fail(r, at, VI_RCPT_ERR_TRUNCATED);
    t = *r->p;
    if ((t & 0xe0) == 0xa0) {
        c = t & 0x1fu;
        n = 0;
    } else if (t >= 0xd9 && t <= 0xdb) {
        n = width(t, 0xd9);
    } else {
        return fail(r, at, VI_RCPT_ERR_TYPE);
    }
    if (left(r) < 1 + (size_t)n) return fail(r, at, VI_RCPT_ERR_TRUNCATED);
    if (n) c = be(r->p + 1, n);
    if (c > left(r) - 1 - n) return fail(r, at, VI_RCPT_ERR_TRUNCATED);
    *s = r->p + 1 + n;
    *len = (size_t)c;
    r->p += 1 + n + (size_t)c;
    return 0;
}

/* An array of exactly `want` elements. */
static int rd_tuple(rd *r, size_t want) {
    const uint8_t *at = r->p;
    size_t n;
    int rc = rd_array(r, &n);
    if (rc) return rc;
    return n == want ? 0 : fail(r, at, VI_RCPT_ERR_SHAPE);
}

static int rd_range(rd *r, uint64_t *first, uint64_t *last) {
    int rc = rd_tuple(r, 2);
    if (!rc) rc = rd_uint(r, first);
    if (!rc) rc = rd_uint(r, last);
    return rc;
}

static int rd_rejection(rd *r, uint64_t *seq, const uint8_t **reason, size_t *len) {
    int rc = rd_tuple(r, 2);
    const uint8_t *at;
    if (!rc) rc = rd_uint(r, seq);
    at = r->p;
    if (!rc) rc = rd_str(r, reason, len);
    if (!rc && !vi_utf8_valid(*reason, *len)) rc = fail(r, at, VI_RCPT_ERR_UTF8);
    return rc;
}

static int check_stored(rd *r, size_t n) {
    uint64_t first, last, prev_last = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        const uint8_t *at = r->p;
        int rc = rd_range(r, &first, &last);
        if (rc) return rc;
        if (first > last || (i > 0 && first <= prev_last)) return fail(r, at, VI_RCPT_ERR_ORDER);
        prev_last = last;
    }
    return 0;
}

static int check_rejected(rd *r, size_t n) {
    uint64_t seq;
    const uint8_t *reason;
    size_t len, i;
    for (i = 0; i < n; i++) {
        int rc = rd_rejection(r, &seq, &reason, &len);
        if (rc) return rc;
    }
    return 0;
}

static int parse(rd *r, vi_receipt *out) {
    size_t n, vin_len;
    uint64_t v;
    const uint8_t *at, *vin;
    int rc = rd_array(r, &n);
    if (rc) return rc;
    if (n < 1) return fail(r, r->start, VI_RCPT_ERR_SHAPE);
    at = r->p; /* the version comes first, so a future layout reads as VERSION, not SHAPE */
    if ((rc = rd_uint(r, &v)) != 0) return rc;
    if (v != VI_RECEIPT_VERSION) return fail(r, at, VI_RCPT_ERR_VERSION);
    if (n != 5) return fail(r, r->start, VI_RCPT_ERR_SHAPE);
    at = r->p;
    if ((rc = rd_uint(r, &v)) != 0) return rc;
    if (v != VI_RECEIPT_KIND) return fail(r, at, VI_RCPT_ERR_KIND);
    at = r->p;
    if ((rc = rd_str(r, &vin, &vin_len)) != 0) return rc;
    if (vin_len != VI_VIN_LEN) return fail(r, at, VI_RCPT_ERR_VIN);
    out->vin = vin;
    if ((rc = rd_array(r, &out->n_stored)) != 0) return rc;
    out->stored_pos = r->p;
    if ((rc = check_stored(r, out->n_stored)) != 0) return rc;
    if ((rc = rd_array(r, &out->n_rejected)) != 0) return rc;
    out->rejected_pos = r->p;
    if ((rc = check_rejected(r, out->n_rejected)) != 0) return rc;
    if (r->p != r->end) return fail(r, r->p, VI_RCPT_ERR_TRAILING);
    out->end = r->end;
    out->stored_left = out->n_stored;
    out->rejected_left = out->n_rejected;
    return 0;
}

int vi_receipt_parse(const uint8_t *p, size_t n, vi_receipt *out, size_t *error_offset) {
    rd r;
    vi_receipt tmp;
    int rc;
    if ((!p && n) || !out) {
        if (error_offset) *error_offset = 0;
        return VI_RCPT_ERR_ARG;
    }
    if (n == 0) { /* no arithmetic on a NULL pointer */
        if (error_offset) *error_offset = 0;
        return VI_RCPT_ERR_TRUNCATED;
    }
    r.start = r.p = p, r.end = p + n, r.error_offset = 0;
    rc = parse(&r, &tmp);
    if (error_offset) *error_offset = rc ? r.error_offset : 0;
    if (rc == 0) *out = tmp; /* *out is untouched by a refused receipt */
    return rc;
}

/* The receipt was checked whole by vi_receipt_parse: these reads cannot fail, but stay bounded. */
int vi_receipt_next_stored(vi_receipt *rc, uint64_t *first, uint64_t *last) {
    rd r;
    if (!rc || rc->stored_left == 0) return 0;
    r.start = r.p = rc->stored_pos, r.end = rc->end;
    if (rd_range(&r, first, last)) return 0;
    rc->stored_pos = r.p;
    rc->stored_left--;
    return 1;
}

int vi_receipt_next_rejected(vi_receipt *rc, uint64_t *seq, const char **reason, size_t *reason_len) {
    rd r;
    const uint8_t *s;
    if (!rc || rc->rejected_left == 0) return 0;
    r.start = r.p = rc->rejected_pos, r.end = rc->end;
    if (rd_rejection(&r, seq, &s, reason_len)) return 0;
    *reason = (const char *)s;
    rc->rejected_pos = r.p;
    rc->rejected_left--;
    return 1;
}

const char *vi_receipt_strerror(int code) {
    switch (code) {
    case 0: return "ok";
    case VI_RCPT_ERR_TRUNCATED: return "truncated, or a declared length beyond the bytes left";
    case VI_RCPT_ERR_TYPE: return "an element of the wrong type";
    case VI_RCPT_ERR_SHAPE: return "an array with the wrong number of elements";
    case VI_RCPT_ERR_VERSION: return "unsupported receipt version";
    case VI_RCPT_ERR_KIND: return "kind is not 16 (receipt)";
    case VI_RCPT_ERR_VIN: return "vin is not 17 bytes";
    case VI_RCPT_ERR_ORDER: return "stored ranges not ascending and disjoint (or first > last)";
    case VI_RCPT_ERR_UTF8: return "a reason that is not valid UTF-8";
    case VI_RCPT_ERR_TRAILING: return "bytes after the receipt";
    case VI_RCPT_ERR_ARG: return "NULL argument";
    default: return "unknown error";
    }
}
