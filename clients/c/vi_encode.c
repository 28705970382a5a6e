/* vi_encode.c: wire format v1 encoder. See vi_encode.h and schemas/WIRE_FORMAT.md.
 *
 * Every msgpack element is written in its shortest form, as msgpack-python's
 * packb(use_bin_type=True) does. A `bin` header needs its length first, so each
 * varint column is produced twice by the same function: once into a counting
 * writer (which also validates), once into the payload.
 */
#include "vi_encode.h"

#include <string.h>

/* A writer that never writes past cap but keeps counting, so the caller learns
 * both "too small" and "over the payload cap". buf NULL, cap 0: count only. */
typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
} vw;

static void put1(vw *w, uint8_t b) {
    if (w->len < w->cap) w->buf[w->len] = b;
    w->len++;
}

static void put_be(vw *w, uint64_t v, unsigned nbytes) {
    while (nbytes--) put1(w, (uint8_t)(v >> (8 * nbytes)));
}

static void put_bytes(vw *w, const uint8_t *p, size_t n) {
    if (n && w->len < w->cap) memcpy(w->buf + w->len, p, n <= w->cap - w->len ? n : w->cap - w->len);
    w->len += n;
}

static void put_varint(vw *w, uint64_t u) {
    while (u >= 0x80) {
        put1(w, (uint8_t)(u | 0x80));
        u >>= 7;
    }
    put1(w, (uint8_t)u);
}

/* zigzag without shifting a negative number (undefined in C): n < 0 maps to -2n - 1. */
static uint64_t zigzag(int64_t n) {
    uint64_t u = (uint64_t)n;
    return (u << 1) ^ ((uint64_t)0 - (u >> 63));
}

static void put_uint(vw *w, uint64_t v) {
    if (v <= 0x7f) {
        put1(w, (uint8_t)v);
    } else if (v <= 0xff) {
        put1(w, 0xcc);
        put_be(w, v, 1);
    } else if (v <= 0xffff) {
        put1(w, 0xcd);
        put_be(w, v, 2);
    } else if (v <= 0xffffffffu) {
        put1(w, 0xce);
        put_be(w, v, 4);
    } else {
        put1(w, 0xcf);
        put_be(w, v, 8);
    }
}

static void put_int(vw *w, int64_t v) {
    if (v >= 0) {
        put_uint(w, (uint64_t)v);
    } else if (v >= -32) {
        put1(w, (uint8_t)(0xe0 | (uint8_t)(v + 32))); /* negative fixint 0xe0..0xff */
    } else if (v >= -128) {
        put1(w, 0xd0);
        put_be(w, (uint64_t)v, 1);
    } else if (v >= -32768) {
        put1(w, 0xd1);
        put_be(w, (uint64_t)v, 2);
    } else if (v >= -2147483647 - 1) {
        put1(w, 0xd2);
        put_be(w, (uint64_t)v, 4);
    } else {
        put1(w, 0xd3);
        put_be(w, (uint64_t)v, 8);
    }
}

/* fix (small) / 16-bit / 32-bit header: arrays 0x90/0xdc/0xdd, str 0xa0/0xd9/0xda/0xdb, bin 0xc4/0xc5/0xc6. */
static void put_array(vw *w, size_t n) {
    if (n <= 15) {
        put1(w, (uint8_t)(0x90 | n));
    } else if (n <= 0xffff) {
        put1(w, 0xdc);
        put_be(w, n, 2);
    } else {
        put1(w, 0xdd);
        put_be(w, n, 4);
    }
}

static void put_str(vw *w, const uint8_t *s, size_t n) {
    if (n <= 31) {
        put1(w, (uint8_t)(0xa0 | n));
    } else if (n <= 0xff) {
        put1(w, 0xd9);
        put_be(w, n, 1);
    } else if (n <= 0xffff) {
        put1(w, 0xda);
        put_be(w, n, 2);
    } else {
        put1(w, 0xdb);
        put_be(w, n, 4);
    }
    put_bytes(w, s, n);
}

static void put_bin_header(vw *w, size_t n) {
    if (n <= 0xff) {
        put1(w, 0xc4);
        put_be(w, n, 1);
    } else if (n <= 0xffff) {
        put1(w, 0xc5);
        put_be(w, n, 2);
    } else {
        put1(w, 0xc6);
        put_be(w, n, 4);
    }
}

int vi_vin_valid(const char *vin) {
    size_t i;
    if (!vin) return 0;
    for (i = 0; i < VI_VIN_LEN; i++) {
        char c = vin[i];
        int digit = c >= '0' && c <= '9';
        int upper = c >= 'A' && c <= 'Z' && c != 'I' && c != 'O' && c != 'Q';
        if (!digit && !upper) return 0; /* also stops at a NUL before 17 characters */
    }
    return vin[VI_VIN_LEN] == '\0';
}

int vi_utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k, j;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1, cp = c & 0x1fu, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, cp = c & 0x0fu, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3, cp = c & 0x07u, min = 0x10000;
        } else {
            return 0; /* continuation byte, 0xc0/0xc1 (overlong) or 0xf5.. (beyond U+10FFFF) */
        }
        if (n - i - 1 < k) return 0;
        for (j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += k + 1;
    }
    return 1;
}

/* [version, kind, vin, seq, base_ts, body...]: the caller writes the body. */
static long put_header(vw *w, int kind, const char *vin, uint64_t seq, uint64_t base_ts) {
    if (!vi_vin_valid(vin)) return VI_ERR_VIN;
    if (base_ts >= (uint64_t)VI_TS_LIMIT) return VI_ERR_TS;
    put_array(w, 6);
    put_uint(w, VI_FORMAT_VERSION);
    put_uint(w, (uint64_t)kind);
    put_str(w, (const uint8_t *)vin, VI_VIN_LEN);
    put_uint(w, seq);
    put_uint(w, base_ts);
    return 0;
}

static long finish(const vw *w) {
    if (w->len > VI_MAX_PAYLOAD) return VI_ERR_TOO_LARGE;
    if (w->len > w->cap) return VI_ERR_BUFFER;
    return (long)w->len;
}

static int ts_ok(int64_t t) { return t >= 0 && t < VI_TS_LIMIT; }
static int value_ok(int64_t v) { return v > -VI_RAW_LIMIT && v < VI_RAW_LIMIT; }

/* --- signals (kind 1) --- */

/* ts: t0 - base, t1 - t0, then deltas of deltas; raw: deltas from 0. A NULL writer is skipped. */
static long signal_codes(const vi_signal_block *b, int64_t base, vw *ts, vw *raw) {
    int64_t prev_t = base, prev_d = 0, prev_r = 0;
    size_t i;
    for (i = 0; i < b->count; i++) {
        int64_t t = b->ts_ms[i], r = b->raw[i], d;
        if (!ts_ok(t)) return VI_ERR_TS;
        if (!value_ok(r)) return VI_ERR_VALUE;
        d = t - prev_t;
        if (ts) put_varint(ts, zigzag(i < 2 ? d : d - prev_d));
        prev_t = t, prev_d = d;
        if (raw) put_varint(raw, zigzag(r - prev_r));
        prev_r = r;
    }
    return 0;
}

static long put_block(vw *w, const vi_signal_block *b, int64_t base) {
    vw n_ts = {NULL, 0, 0}, n_raw = {NULL, 0, 0};
    long rc;
    if (b->scale_exp < -VI_SCALE_EXP_MAX || b->scale_exp > VI_SCALE_EXP_MAX) return VI_ERR_SCALE;
    if (b->count < 1 || b->count > VI_MAX_COUNT) return VI_ERR_COUNT;
    if (!b->ts_ms || !b->raw) return VI_ERR_ARG;
    rc = signal_codes(b, base, &n_ts, &n_raw); /* validates every sample */
    if (rc) return rc;
    put_array(w, 5);
    put_uint(w, b->signal_id);
    put_int(w, b->scale_exp);
    put_uint(w, b->count);
    put_bin_header(w, n_ts.len);
    signal_codes(b, base, w, NULL);
    put_bin_header(w, n_raw.len);
    signal_codes(b, base, NULL, w);
    return 0;
}

long vi_encode_signals(uint8_t *out, size_t cap, const char *vin, uint64_t seq, uint64_t base_ts_ms,
                       const vi_signal_block *blocks, size_t n_blocks) {
    vw w;
    long rc;
    size_t i;
    if (!out && cap) return VI_ERR_ARG;
    w.buf = out, w.cap = cap, w.len = 0;
    rc = put_header(&w, VI_KIND_SIGNALS, vin, seq, base_ts_ms);
    if (rc) return rc;
    if (n_blocks == 0) return VI_ERR_COUNT; /* the gateway would reject an empty message */
    if (!blocks) return VI_ERR_ARG;
    put_array(&w, n_blocks);
    for (i = 0; i < n_blocks; i++) {
        rc = put_block(&w, &blocks[i], (int64_t)base_ts_ms);
        if (rc) return rc;
        if (w.len > VI_MAX_PAYLOAD) return VI_ERR_TOO_LARGE; /* stop early; also bounds w.len */
    }
    return finish(&w);
}

/* --- events (kind 2) --- */

static long event_codes(const vi_event *e, size_t n, int64_t base, vw *ids, vw *ts, vw *vals) {
    int64_t prev = base;
    size_t i;
    for (i = 0; i < n; i++) {
        if (!ts_ok(e[i].ts_ms)) return VI_ERR_TS;
        if (!value_ok(e[i].value)) return VI_ERR_VALUE;
        if (ids) put_varint(ids, e[i].event_id);
        if (ts) put_varint(ts, zigzag(e[i].ts_ms - prev));
        if (vals) put_varint(vals, zigzag(e[i].value));
        prev = e[i].ts_ms;
    }
    return 0;
}

static long check_texts(const vi_event *e, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (e[i].text_len > VI_MAX_TEXT) return VI_ERR_TEXT_LEN;
        if (e[i].text_len && !e[i].text) return VI_ERR_ARG;
        if (!vi_utf8_valid((const uint8_t *)e[i].text, e[i].text_len)) return VI_ERR_UTF8;
    }
    return 0;
}

long vi_encode_events(uint8_t *out, size_t cap, const char *vin, uint64_t seq, uint64_t base_ts_ms,
                      const vi_event *events, size_t n) {
    vw w, n_ids = {NULL, 0, 0}, n_ts = {NULL, 0, 0}, n_vals = {NULL, 0, 0};
    long rc;
    size_t i;
    int64_t base = (int64_t)base_ts_ms;
    if (!out && cap) return VI_ERR_ARG;
    w.buf = out, w.cap = cap, w.len = 0;
    rc = put_header(&w, VI_KIND_EVENTS, vin, seq, base_ts_ms);
    if (rc) return rc;
    if (n < 1 || n > VI_MAX_COUNT) return VI_ERR_COUNT;
    if (!events) return VI_ERR_ARG;
    rc = check_texts(events, n);
    if (!rc) rc = event_codes(events, n, base, &n_ids, &n_ts, &n_vals);
    if (rc) return rc;
    put_array(&w, 5);
    put_uint(&w, n);
    put_bin_header(&w, n_ids.len);
    event_codes(events, n, base, &w, NULL, NULL);
    put_bin_header(&w, n_ts.len);
    event_codes(events, n, base, NULL, &w, NULL);
    put_bin_header(&w, n_vals.len);
    event_codes(events, n, base, NULL, NULL, &w);
    if (w.len > VI_MAX_PAYLOAD) return VI_ERR_TOO_LARGE;
    put_array(&w, n);
    for (i = 0; i < n; i++) put_str(&w, (const uint8_t *)events[i].text, events[i].text_len);
    return finish(&w);
}

/* --- CAN frames (kind 3) --- */

static const uint8_t FD_LEN[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64};

/* The DLC byte for a frame (smallest code for its length, bit 4 for FD), or -1 for a length it cannot have. */
static int dlc_byte(const vi_can_frame *f) {
    int code;
    if (!f->fd) return f->len <= 8 ? f->len : -1;
    for (code = 0; code < 16; code++) {
        if (FD_LEN[code] == f->len) return code | 0x10;
    }
    return -1;
}

static long frame_codes(const vi_can_frame *f, size_t n, int64_t base, vw *ts, vw *ids, size_t *data_len) {
    int64_t prev = base;
    size_t i, total = 0;
    for (i = 0; i < n; i++) {
        uint32_t limit = f[i].extended ? VI_CAN_EXT_LIMIT : VI_CAN_STD_LIMIT;
        if (!ts_ok(f[i].ts_ms)) return VI_ERR_TS;
        if (f[i].id >= limit) return VI_ERR_CAN_ID;
        if (dlc_byte(&f[i]) < 0) return VI_ERR_CAN_LEN;
        if (f[i].len && !f[i].data) return VI_ERR_ARG;
        if (ts) put_varint(ts, zigzag(f[i].ts_ms - prev));
        if (ids) put_varint(ids, ((uint64_t)f[i].id << 1) | (f[i].extended ? 1u : 0u));
        prev = f[i].ts_ms;
        total += f[i].len;
    }
    *data_len = total;
    return 0;
}

long vi_encode_can(uint8_t *out, size_t cap, const char *vin, uint64_t seq, uint64_t base_ts_ms,
                   const vi_can_frame *frames, size_t n) {
    vw w, n_ts = {NULL, 0, 0}, n_ids = {NULL, 0, 0};
    long rc;
    size_t i, data_len;
    int64_t base = (int64_t)base_ts_ms;
    if (!out && cap) return VI_ERR_ARG;
    w.buf = out, w.cap = cap, w.len = 0;
    rc = put_header(&w, VI_KIND_CAN, vin, seq, base_ts_ms);
    if (rc) return rc;
    if (n < 1 || n > VI_MAX_COUNT) return VI_ERR_COUNT;
    if (!frames) return VI_ERR_ARG;
    rc = frame_codes(frames, n, base, &n_ts, &n_ids, &data_len);
    if (rc) return rc;
    put_array(&w, 6);
    put_uint(&w, n);
    put_bin_header(&w, n_ts.len);
    frame_codes(frames, n, base, &w, NULL, &data_len);
    put_bin_header(&w, n);
    for (i = 0; i < n; i++) put1(&w, frames[i].bus);
    put_bin_header(&w, n_ids.len);
    frame_codes(frames, n, base, NULL, &w, &data_len);
    put_bin_header(&w, n);
    for (i = 0; i < n; i++) put1(&w, (uint8_t)dlc_byte(&frames[i]));
    if (w.len > VI_MAX_PAYLOAD) return VI_ERR_TOO_LARGE;
    put_bin_header(&w, data_len);
    for (i = 0; i < n; i++) put_bytes(&w, frames[i].data, frames[i].len);
    return finish(&w);
}

/* --- values --- */

static const double POW10[VI_SCALE_EXP_MAX + 1] = {1e0, 1e1, 1e2, 1e3, 1e4,  1e5, 1e6,
                                                   1e7, 1e8, 1e9, 1e10, 1e11, 1e12}; /* all exact */

int vi_quantize(double value, int scale_exp, int64_t *raw) {
    const double limit = 9007199254740992.0; /* 2^53 */
    double y, frac;
    int64_t whole;
    if (scale_exp < -VI_SCALE_EXP_MAX || scale_exp > VI_SCALE_EXP_MAX) return VI_ERR_SCALE;
    y = scale_exp >= 0 ? value / POW10[scale_exp] : value * POW10[-scale_exp];
    if (!(y < limit && y > -limit)) return VI_ERR_VALUE; /* also NaN and infinities */
    whole = (int64_t)y;                                  /* truncates toward zero; exact below 2^53 */
    frac = y - (double)whole;                            /* exact, so the half-way test is too */
    if (frac >= 0.5 || frac <= -0.5) whole += y > 0 ? 1 : -1;
    if (!value_ok(whole)) return VI_ERR_VALUE;
    if (raw) *raw = whole;
    return 0;
}

double vi_raw_to_value(int64_t raw, int scale_exp) {
    if (scale_exp < -VI_SCALE_EXP_MAX || scale_exp > VI_SCALE_EXP_MAX) scale_exp = 0;
    return scale_exp >= 0 ? (double)raw * POW10[scale_exp] : (double)raw / POW10[-scale_exp];
}

const char *vi_strerror(long code) {
    switch (code) {
    case VI_ERR_ARG: return "a required pointer is NULL";
    case VI_ERR_BUFFER: return "output buffer too small";
    case VI_ERR_TOO_LARGE: return "payload over 262144 bytes: split it";
    case VI_ERR_VIN: return "vin is not 17 characters of [A-HJ-NPR-Z0-9]";
    case VI_ERR_TS: return "timestamp outside [0, 2^48) ms";
    case VI_ERR_VALUE: return "value outside (-2^53, 2^53) or not finite";
    case VI_ERR_SCALE: return "scale_exp outside [-12, 12]";
    case VI_ERR_COUNT: return "count outside [1, 65535] (empty message or block)";
    case VI_ERR_TEXT_LEN: return "event text over 255 bytes";
    case VI_ERR_UTF8: return "event text is not valid UTF-8";
    case VI_ERR_CAN_ID: return "CAN id at or above its limit (2^11 standard, 2^29 extended)";
    case VI_ERR_CAN_LEN: return "CAN data length not allowed for the frame type";
    default: return code >= 0 ? "ok" : "unknown error";
    }
}
