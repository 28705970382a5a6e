/* test_vi: unit tests of the C client library (no broker needed).
 *
 *   test_vi [golden_dir]
 *
 * encoder (golden vectors, shortest forms at every boundary, limits, UTF-8, buffer sizes),
 * receipt parser (every width, every truncation, hostile lengths and types, a mutation fuzz),
 * seq persistence, buffer recovery (truncation at every byte offset, damage in the middle,
 * full, compaction) and the outbox's send / resend / receipt logic with a fake transport.
 * Prints one line per group and exits non-zero on any failure.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../vi_buffer.h"
#include "../vi_encode.h"
#include "../vi_outbox.h"
#include "../vi_receipt.h"
#include "../vi_seq.h"

static int g_failures, g_checks;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        g_checks++;                                                                   \
        if (!(cond)) {                                                                \
            g_failures++;                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                             \
    } while (0)

#define CHECK_EQ(a, b)                                                                                      \
    do {                                                                                                    \
        long long a_ = (long long)(a), b_ = (long long)(b);                                                 \
        g_checks++;                                                                                         \
        if (a_ != b_) {                                                                                     \
            g_failures++;                                                                                   \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, a_, #b, b_); \
        }                                                                                                   \
    } while (0)

static const char VIN[] = "WVWZZZ1JZXW000001";
static const uint64_t BASE = 1795341600000ULL;
static uint8_t g_buf[VI_MAX_PAYLOAD + 64];
static uint64_t g_rng = 0x2545f4914f6cdd1dULL;

static uint64_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ULL;
}

static size_t from_hex(const char *s, uint8_t *out, size_t cap) {
    size_t n = 0;
    unsigned v;
    while (s[0] && s[1] && n < cap && sscanf(s, "%2x", &v) == 1) out[n++] = (uint8_t)v, s += 2;
    return n;
}

static size_t read_golden(const char *dir, const char *name, uint8_t *out, size_t cap) {
    char path[1024], text[4096];
    FILE *f;
    size_t n;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "r");
    if (!f) return 0;
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return from_hex(text, out, cap);
}

/* ------------------------------------------------------------------ encoder */

static void test_golden(const char *dir) {
    static const double speed[5] = {52.3, 52.5, 52.4, 52.4, 52.9}, dist[2] = {48211314.0, 48211328.0};
    int64_t ts1[5], raw1[5], ts2[2] = {0, 1000}, raw2[2];
    uint8_t want[512], d1[2] = {0xe8, 0x03}, d2[4] = {0, 0, 0x80, 0x3f}, d3[12];
    vi_signal_block blocks[2];
    vi_event ev[2];
    vi_can_frame fr[3];
    const int64_t offs[5] = {0, 200, 400, 601, 800};
    size_t n, i;
    long len;
    for (i = 0; i < 5; i++) {
        ts1[i] = (int64_t)BASE + offs[i];
        CHECK_EQ(vi_quantize(speed[i], -1, &raw1[i]), 0);
    }
    for (i = 0; i < 2; i++) {
        ts2[i] += (int64_t)BASE;
        CHECK_EQ(vi_quantize(dist[i], 0, &raw2[i]), 0);
    }
    CHECK_EQ(raw1[0], 523);
    blocks[0].signal_id = 1, blocks[0].scale_exp = -1, blocks[0].count = 5, blocks[0].ts_ms = ts1, blocks[0].raw = raw1;
    blocks[1].signal_id = 2, blocks[1].scale_exp = 0, blocks[1].count = 2, blocks[1].ts_ms = ts2, blocks[1].raw = raw2;
    n = read_golden(dir, "signals_v1.hex", want, sizeof want);
    len = vi_encode_signals(g_buf, sizeof g_buf, VIN, (3ULL << 32) | 1, BASE, blocks, 2);
    CHECK(n == 76 && len == 76 && memcmp(g_buf, want, n) == 0);

    ev[0].event_id = 1, ev[0].ts_ms = (int64_t)BASE + 120, ev[0].value = 1;
    ev[0].text = "driver door opened", ev[0].text_len = 18;
    ev[1].event_id = 2, ev[1].ts_ms = (int64_t)BASE + 130, ev[1].value = -40;
    ev[1].text = "ambient: 22.5\xc2\xb0" "C", ev[1].text_len = 16;
    n = read_golden(dir, "events_v1.hex", want, sizeof want);
    len = vi_encode_events(g_buf, sizeof g_buf, VIN, (3ULL << 32) | 2, BASE, ev, 2);
    CHECK(n > 0 && len == (long)n && memcmp(g_buf, want, n) == 0);

    for (i = 0; i < 12; i++) d3[i] = (uint8_t)i;
    memset(fr, 0, sizeof fr);
    fr[0].ts_ms = (int64_t)BASE, fr[0].id = 0x0c8, fr[0].len = 2, fr[0].data = d1;
    fr[1].ts_ms = (int64_t)BASE + 10, fr[1].id = 0x18fef100, fr[1].extended = 1, fr[1].len = 4, fr[1].data = d2;
    fr[2].ts_ms = (int64_t)BASE + 20, fr[2].bus = 1, fr[2].id = 0x123, fr[2].fd = 1, fr[2].len = 12, fr[2].data = d3;
    n = read_golden(dir, "can_v1.hex", want, sizeof want);
    len = vi_encode_can(g_buf, sizeof g_buf, VIN, (3ULL << 32) | 3, BASE, fr, 3);
    CHECK(n == 87 && len == 87 && memcmp(g_buf, want, n) == 0);
}

/* A one-sample signals payload; returns its length. */
static long one_sample(uint64_t seq, uint64_t base, uint16_t sid, int exp, int64_t ts, int64_t raw) {
    vi_signal_block b;
    b.signal_id = sid, b.scale_exp = exp, b.count = 1, b.ts_ms = &ts, b.raw = &raw;
    return vi_encode_signals(g_buf, sizeof g_buf, VIN, seq, base, &b, 1);
}

static void test_uint_forms(void) {
    static const struct {
        uint64_t v;
        const char *hex;
    } cases[] = {
        {0, "00"},
        {127, "7f"},
        {128, "cc80"},
        {255, "ccff"},
        {256, "cd0100"},
        {65535, "cdffff"},
        {65536, "ce00010000"},
        {4294967295ULL, "ceffffffff"},
        {4294967296ULL, "cf0000000100000000"},
        {18446744073709551615ULL, "cfffffffffffffffff"},
    };
    uint8_t want[16];
    size_t i, n;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        n = from_hex(cases[i].hex, want, sizeof want);
        CHECK(one_sample(cases[i].v, 0, 1, 0, 0, 0) > 0);
        CHECK(memcmp(g_buf + 21, want, n) == 0); /* seq sits after the 21-byte prefix */
        if (cases[i].v < (1ULL << 48)) {
            size_t at = 21 + 1;
            CHECK(one_sample(0, cases[i].v, 1, 0, (int64_t)cases[i].v, 0) > 0);
            CHECK(memcmp(g_buf + at, want, n) == 0); /* base_ts after seq 0 */
        }
    }
    CHECK(one_sample(0, (1ULL << 48) - 1, 1, 0, (int64_t)(1ULL << 48) - 1, 0) > 0);
    CHECK_EQ(one_sample(0, 1ULL << 48, 1, 0, 0, 0), VI_ERR_TS);
}

static void test_block_fields(void) {
    int exp;
    long len;
    /* [6-array, 1, 1, vin(18), seq 0, base 0, body 0x91, block 0x95, sid, exp ...]: exp at offset 26 for sid < 128 */
    for (exp = -12; exp <= 12; exp++) {
        len = one_sample(0, 0, 5, exp, 0, 0);
        CHECK(len > 0 && g_buf[26] == (uint8_t)(int8_t)exp);
    }
    CHECK_EQ(one_sample(0, 0, 5, 13, 0, 0), VI_ERR_SCALE);
    CHECK_EQ(one_sample(0, 0, 5, -13, 0, 0), VI_ERR_SCALE);
    CHECK(one_sample(0, 0, 65535, 0, 0, 0) > 0 && g_buf[25] == 0xcd && g_buf[26] == 0xff && g_buf[27] == 0xff);
    /* raw and timestamps at their limits */
    CHECK(one_sample(0, 0, 1, 0, 0, (int64_t)(1ULL << 53) - 1) > 0);
    CHECK(one_sample(0, 0, 1, 0, 0, -(int64_t)(1ULL << 53) + 1) > 0);
    CHECK_EQ(one_sample(0, 0, 1, 0, 0, (int64_t)(1ULL << 53)), VI_ERR_VALUE);
    CHECK_EQ(one_sample(0, 0, 1, 0, 0, -(int64_t)(1ULL << 53)), VI_ERR_VALUE);
    CHECK_EQ(one_sample(0, 0, 1, 0, -1, 0), VI_ERR_TS);
    CHECK_EQ(one_sample(0, 0, 1, 0, (int64_t)(1ULL << 48), 0), VI_ERR_TS);
    CHECK_EQ(one_sample(0, 0, 1, 0, INT64_MIN, INT64_MIN), VI_ERR_TS);
}

static void test_vins(void) {
    const char *bad[] = {"WVWZZZ1JZXW00000", "WVWZZZ1JZXW0000012", "WVWZZZ1JZXW00000I", "WVWZZZ1JZXW00000O",
                         "WVWZZZ1JZXW00000Q", "wvwzzz1jzxw000001", "WVWZZZ1JZXW 00001", "WVWZZZ1JZXW00000\xc3"};
    vi_signal_block b;
    int64_t z = 0;
    size_t i;
    b.signal_id = 1, b.scale_exp = 0, b.count = 1, b.ts_ms = &z, b.raw = &z;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(vi_encode_signals(g_buf, sizeof g_buf, bad[i], 0, 0, &b, 1), VI_ERR_VIN);
    }
    CHECK_EQ(vi_encode_signals(g_buf, sizeof g_buf, NULL, 0, 0, &b, 1), VI_ERR_VIN);
    CHECK(vi_vin_valid("0123456789ABCDEFG") == 1);
    CHECK(vi_vin_valid("0123456789ABCDEFGH") == 0);
}

static void test_counts_and_arrays(void) {
    static int64_t ts[VI_MAX_COUNT + 1], raw[VI_MAX_COUNT + 1];
    vi_signal_block b[16];
    size_t i;
    long len;
    for (i = 0; i < 16; i++) {
        b[i].signal_id = (uint16_t)i, b[i].scale_exp = 0, b[i].count = 1, b[i].ts_ms = ts, b[i].raw = raw;
    }
    CHECK_EQ(vi_encode_signals(g_buf, sizeof g_buf, VIN, 0, 0, b, 0), VI_ERR_COUNT);
    CHECK(vi_encode_signals(g_buf, sizeof g_buf, VIN, 0, 0, b, 15) > 0 && g_buf[23] == 0x9f);
    CHECK(vi_encode_signals(g_buf, sizeof g_buf, VIN, 0, 0, b, 16) > 0 && g_buf[23] == 0xdc && g_buf[25] == 16);
    b[0].count = 0;
    CHECK_EQ(vi_encode_signals(g_buf, sizeof g_buf, VIN, 0, 0, b, 1), VI_ERR_COUNT);
    b[0].count = VI_MAX_COUNT + 1;
    CHECK_EQ(vi_encode_signals(g_buf, sizeof g_buf, VIN, 0, 0, b, 1), VI_ERR_COUNT);
    b[0].count = 1, b[0].raw = NULL;
    CHECK_EQ(vi_encode_signals(g_buf, sizeof g_buf, VIN, 0, 0, b, 1), VI_ERR_ARG);
    /* 65535 samples of steady rate and constant value: 1 byte each, bin16 */
    for (i = 0; i < VI_MAX_COUNT; i++) ts[i] = (int64_t)(i * 10), raw[i] = 7;
    b[0].count = VI_MAX_COUNT, b[0].raw = raw;
    len = vi_encode_signals(g_buf, sizeof g_buf, VIN, 0, 0, b, 1);
    CHECK(len > 2 * VI_MAX_COUNT && g_buf[27] == 0xcd && g_buf[30] == 0xc5); /* count uint16, ts bin16 */
    /* huge jumps: 8-byte varints make it exceed the payload cap */
    for (i = 0; i < VI_MAX_COUNT; i++) raw[i] = i % 2 ? (int64_t)(1ULL << 53) - 1 : -(int64_t)(1ULL << 53) + 1;
    CHECK_EQ(vi_encode_signals(g_buf, sizeof g_buf, VIN, 0, 0, b, 1), VI_ERR_TOO_LARGE);
    CHECK_EQ(vi_encode_signals(g_buf, 10, VIN, 0, 0, b, 1), VI_ERR_TOO_LARGE);
}

/* Every buffer size below the payload's fails with VI_ERR_BUFFER and never writes past it. */
static void test_buffer_sizes(void) {
    int64_t ts[3] = {100, 300, 250}, raw[3] = {5, -70, 9000};
    vi_signal_block b;
    long len, cap, rc;
    uint8_t *exact;
    b.signal_id = 300, b.scale_exp = -3, b.count = 3, b.ts_ms = ts, b.raw = raw;
    len = vi_encode_signals(g_buf, sizeof g_buf, VIN, 1ULL << 40, 90, &b, 1);
    CHECK(len > 0);
    for (cap = 0; cap <= len; cap++) {
        exact = malloc(cap ? (size_t)cap : 1); /* AddressSanitizer flags any byte written past cap */
        rc = vi_encode_signals(cap ? exact : NULL, (size_t)cap, VIN, 1ULL << 40, 90, &b, 1);
        CHECK(cap == len ? rc == len && memcmp(exact, g_buf, (size_t)len) == 0 : rc == VI_ERR_BUFFER);
        free(exact);
    }
    CHECK_EQ(vi_encode_signals(NULL, 5, VIN, 0, 0, &b, 1), VI_ERR_ARG);
}

static void test_events(void) {
    static char text[300];
    vi_event e;
    long len;
    memset(text, 'a', sizeof text);
    memset(&e, 0, sizeof e);
    e.event_id = 10, e.ts_ms = 5, e.text = text;
    /* header 39 bytes: body 0x95, count, 3 x (c4 01 xx), then the texts array and the str */
    e.text_len = 31;
    CHECK((len = vi_encode_events(g_buf, sizeof g_buf, VIN, 0, 0, &e, 1)) > 0 && g_buf[len - 32] == 0xbf);
    e.text_len = 32;
    CHECK((len = vi_encode_events(g_buf, sizeof g_buf, VIN, 0, 0, &e, 1)) > 0 && g_buf[len - 34] == 0xd9);
    e.text_len = 255;
    CHECK((len = vi_encode_events(g_buf, sizeof g_buf, VIN, 0, 0, &e, 1)) > 0 && g_buf[len - 256] == 0xff);
    e.text_len = 256;
    CHECK_EQ(vi_encode_events(g_buf, sizeof g_buf, VIN, 0, 0, &e, 1), VI_ERR_TEXT_LEN);
    e.text_len = 0, e.text = NULL;
    CHECK((len = vi_encode_events(g_buf, sizeof g_buf, VIN, 0, 0, &e, 1)) > 0 && g_buf[len - 1] == 0xa0);
    e.text_len = 3;
    CHECK_EQ(vi_encode_events(g_buf, sizeof g_buf, VIN, 0, 0, &e, 1), VI_ERR_ARG);
    e.text_len = 0;
    CHECK_EQ(vi_encode_events(g_buf, sizeof g_buf, VIN, 0, 0, &e, 0), VI_ERR_COUNT);
    e.value = (int64_t)(1ULL << 53);
    CHECK_EQ(vi_encode_events(g_buf, sizeof g_buf, VIN, 0, 0, &e, 1), VI_ERR_VALUE);
    e.value = 0, e.ts_ms = -1;
    CHECK_EQ(vi_encode_events(g_buf, sizeof g_buf, VIN, 0, 0, &e, 1), VI_ERR_TS);
}

static void test_utf8(void) {
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"plain", 1},
        {"\xc3\xa9", 1},          /* é */
        {"\xe2\x82\xac", 1},      /* € */
        {"\xf0\x9f\x98\x80", 1},  /* 😀 */
        {"\xf4\x8f\xbf\xbf", 1},  /* U+10FFFF */
        {"\xef\xbf\xbf", 1},      /* U+FFFF */
        {"\xc0\x80", 0},          /* overlong NUL */
        {"\xc1\xbf", 0},          /* overlong */
        {"\xe0\x80\xaf", 0},      /* overlong / */
        {"\xf0\x8f\xbf\xbf", 0},  /* overlong U+FFFF */
        {"\xed\xa0\x80", 0},      /* surrogate U+D800 */
        {"\xed\xbf\xbf", 0},      /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", 0},  /* U+110000 */
        {"\xf5\x80\x80\x80", 0},  /* beyond */
        {"\xe2\x82", 0},          /* truncated */
        {"\x80", 0},              /* lone continuation */
        {"\xc3\x28", 0},          /* bad continuation */
        {"\xff", 0},
    };
    size_t i;
    vi_event e;
    memset(&e, 0, sizeof e);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_EQ(vi_utf8_valid((const uint8_t *)cases[i].s, strlen(cases[i].s)), cases[i].ok);
        e.text = cases[i].s, e.text_len = strlen(cases[i].s);
        CHECK(cases[i].ok ? vi_encode_events(g_buf, sizeof g_buf, VIN, 0, 0, &e, 1) > 0
                          : vi_encode_events(g_buf, sizeof g_buf, VIN, 0, 0, &e, 1) == VI_ERR_UTF8);
    }
    e.text = "a\0b", e.text_len = 3; /* U+0000 is valid UTF-8 */
    CHECK(vi_encode_events(g_buf, sizeof g_buf, VIN, 0, 0, &e, 1) > 0);
}

static void test_can(void) {
    static uint8_t data[64 * 5];
    vi_can_frame f[5];
    long len;
    size_t i;
    memset(f, 0, sizeof f);
    f[0].data = data;
    f[0].id = 2047;
    CHECK(vi_encode_can(g_buf, sizeof g_buf, VIN, 0, 0, f, 1) > 0);
    f[0].id = 2048;
    CHECK_EQ(vi_encode_can(g_buf, sizeof g_buf, VIN, 0, 0, f, 1), VI_ERR_CAN_ID);
    f[0].extended = 1, f[0].id = (1u << 29) - 1;
    CHECK(vi_encode_can(g_buf, sizeof g_buf, VIN, 0, 0, f, 1) > 0);
    f[0].id = 1u << 29;
    CHECK_EQ(vi_encode_can(g_buf, sizeof g_buf, VIN, 0, 0, f, 1), VI_ERR_CAN_ID);
    f[0].id = 1, f[0].len = 9;
    CHECK_EQ(vi_encode_can(g_buf, sizeof g_buf, VIN, 0, 0, f, 1), VI_ERR_CAN_LEN);
    f[0].fd = 1, f[0].len = 13;
    CHECK_EQ(vi_encode_can(g_buf, sizeof g_buf, VIN, 0, 0, f, 1), VI_ERR_CAN_LEN);
    f[0].len = 64; /* dlc byte: FD | code 15 */
    CHECK((len = vi_encode_can(g_buf, sizeof g_buf, VIN, 0, 0, f, 1)) > 0 && g_buf[len - 67] == 0x1f);
    f[0].len = 1, f[0].data = NULL;
    CHECK_EQ(vi_encode_can(g_buf, sizeof g_buf, VIN, 0, 0, f, 1), VI_ERR_ARG);
    for (i = 0; i < 5; i++) f[i].fd = 1, f[i].len = 64, f[i].data = data + 64 * i;
    len = vi_encode_can(g_buf, sizeof g_buf, VIN, 0, 0, f, 4); /* 256 data bytes: bin16 */
    CHECK(len > 0 && g_buf[len - 259] == 0xc5 && g_buf[len - 258] == 1 && g_buf[len - 257] == 0);
    CHECK_EQ(vi_encode_can(g_buf, sizeof g_buf, VIN, 0, 0, f, 0), VI_ERR_COUNT);
}

static void test_quantize(void) {
    int64_t r = 0;
    CHECK(vi_quantize(52.34, -1, &r) == 0 && r == 523);
    CHECK(vi_quantize(0.05, -1, &r) == 0 && r == 1);
    CHECK(vi_quantize(-0.05, -1, &r) == 0 && r == -1);
    CHECK(vi_quantize(2.5, 0, &r) == 0 && r == 3);
    CHECK(vi_quantize(-2.5, 0, &r) == 0 && r == -3);
    CHECK(vi_quantize(-0.4, 0, &r) == 0 && r == 0);
    CHECK(vi_quantize(1234.0, 3, &r) == 0 && r == 1);
    CHECK(vi_quantize(9007199254740991.0, 0, &r) == 0 && r == 9007199254740991LL);
    CHECK_EQ(vi_quantize(9007199254740992.0, 0, &r), VI_ERR_VALUE);
    CHECK_EQ(vi_quantize(0.0 / 0.0 == 0.0 ? 1.0 : 1e300 * 1e300, 0, &r), VI_ERR_VALUE); /* inf */
    CHECK_EQ(vi_quantize(1.0, 13, &r), VI_ERR_SCALE);
    CHECK(vi_raw_to_value(1234, -1) == 123.4);
    CHECK(vi_raw_to_value(7, 2) == 700.0);
}

/* ------------------------------------------------------------------ receipts */

/* A tiny msgpack writer for hand-built receipts. width 0: shortest; 1/2/4/8: that unsigned width;
 * -1/-2/-4/-8: that signed width (only non-negative values here). */
typedef struct {
    uint8_t *p;
    size_t n;
} mp;

static void mp_byte(mp *m, uint8_t b) { m->p[m->n++] = b; }
static void mp_be(mp *m, uint64_t v, int n) {
    while (n--) mp_byte(m, (uint8_t)(v >> (8 * n)));
}

static void mp_uint(mp *m, uint64_t v, int width) {
    static const uint8_t uns[9] = {0, 0xcc, 0xcd, 0, 0xce, 0, 0, 0, 0xcf};
    static const uint8_t sig[9] = {0, 0xd0, 0xd1, 0, 0xd2, 0, 0, 0, 0xd3};
    if (width == 0) {
        width = v <= 0x7f ? 0 : v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
        if (!width) {
            mp_byte(m, (uint8_t)v);
            return;
        }
    }
    if (width > 0) mp_byte(m, uns[width]), mp_be(m, v, width);
    else mp_byte(m, sig[-width]), mp_be(m, v, -width);
}

static void mp_array(mp *m, size_t n, int width) {
    if (width == 0 && n <= 15) mp_byte(m, (uint8_t)(0x90 | n));
    else if (width == 4) mp_byte(m, 0xdd), mp_be(m, n, 4);
    else mp_byte(m, 0xdc), mp_be(m, n, 2);
}

static void mp_str(mp *m, const char *s, size_t n, int width) {
    if (width == 0 && n <= 31) mp_byte(m, (uint8_t)(0xa0 | n));
    else if (width == 1 || (width == 0 && n <= 255)) mp_byte(m, 0xd9), mp_be(m, n, 1);
    else if (width == 2) mp_byte(m, 0xda), mp_be(m, n, 2);
    else mp_byte(m, 0xdb), mp_be(m, n, 4);
    memcpy(m->p + m->n, s, n);
    m->n += n;
}

/* [1, 16, VIN, [[1,3],[5,5],[300, 2^40]], [[4,"malformed"],[2^33,"seq_reused"]]] in the given widths */
static size_t build_receipt(uint8_t *out, int iw, int aw, int sw) {
    mp m = {out, 0};
    int wide = iw ? (iw > 0 ? 8 : -8) : 0; /* values above 2^32 need 8 bytes */
    mp_array(&m, 5, aw);
    mp_uint(&m, 1, iw);
    mp_uint(&m, 16, iw);
    mp_str(&m, VIN, 17, sw);
    mp_array(&m, 3, aw);
    mp_array(&m, 2, aw), mp_uint(&m, 1, iw), mp_uint(&m, 3, iw);
    mp_array(&m, 2, aw), mp_uint(&m, 5, iw), mp_uint(&m, 5, iw);
    mp_array(&m, 2, aw), mp_uint(&m, 300, wide), mp_uint(&m, 1ULL << 40, wide);
    mp_array(&m, 2, aw);
    mp_array(&m, 2, aw), mp_uint(&m, 4, iw), mp_str(&m, "malformed", 9, sw);
    mp_array(&m, 2, aw), mp_uint(&m, 1ULL << 33, wide), mp_str(&m, "seq_reused", 10, sw);
    return m.n;
}

static void check_receipt_content(const uint8_t *p, size_t n) {
    vi_receipt r;
    uint64_t a, b;
    const char *reason;
    size_t len, at;
    int rc = vi_receipt_parse(p, n, &r, &at);
    CHECK_EQ(rc, 0);
    if (rc) return;
    CHECK(memcmp(r.vin, VIN, 17) == 0 && r.n_stored == 3 && r.n_rejected == 2);
    CHECK(vi_receipt_next_stored(&r, &a, &b) && a == 1 && b == 3);
    CHECK(vi_receipt_next_stored(&r, &a, &b) && a == 5 && b == 5);
    CHECK(vi_receipt_next_stored(&r, &a, &b) && a == 300 && b == 1ULL << 40);
    CHECK(!vi_receipt_next_stored(&r, &a, &b));
    CHECK(vi_receipt_next_rejected(&r, &a, &reason, &len) && a == 4 && len == 9 && !memcmp(reason, "malformed", 9));
    CHECK(vi_receipt_next_rejected(&r, &a, &reason, &len) && a == 1ULL << 33 && len == 10);
    CHECK(!vi_receipt_next_rejected(&r, &a, &reason, &len));
}

static int parse_code(const uint8_t *p, size_t n, size_t *at) {
    vi_receipt r;
    uint8_t *copy = malloc(n ? n : 1); /* exact size: AddressSanitizer sees any read past the end */
    int rc;
    memcpy(copy, p, n);
    rc = vi_receipt_parse(copy, n, &r, at);
    free(copy);
    return rc;
}

static void test_receipt_widths(void) {
    static const int iws[] = {0, 1, 2, 4, 8, -1, -2, -4, -8}, aws[] = {0, 2, 4}, sws[] = {0, 1, 2, 4};
    uint8_t p[512];
    size_t i, j, k, n;
    for (i = 0; i < sizeof iws / sizeof iws[0]; i++) {
        for (j = 0; j < sizeof aws / sizeof aws[0]; j++) {
            for (k = 0; k < sizeof sws / sizeof sws[0]; k++) {
                n = build_receipt(p, iws[i], aws[j], sws[k]);
                check_receipt_content(p, n);
            }
        }
    }
}

static void test_receipt_truncations(void) {
    uint8_t p[512];
    size_t n = build_receipt(p, 0, 0, 0), cut, at;
    int rc;
    for (cut = 0; cut < n; cut++) {
        rc = parse_code(p, cut, &at);
        CHECK(rc == VI_RCPT_ERR_TRUNCATED || rc == VI_RCPT_ERR_SHAPE);
        CHECK(at <= cut);
    }
    p[n] = 0xc0;
    CHECK_EQ(parse_code(p, n + 1, &at), VI_RCPT_ERR_TRAILING);
    CHECK_EQ(at, n);
}

static size_t hexp(const char *hex, uint8_t *out) { return from_hex(hex, out, 512); }

static void test_receipt_hostile(void) {
    static const struct {
        const char *hex;
        int rc;
        size_t at;
    } cases[] = {
        /* huge declared lengths */
        {"ddffffffff01", VI_RCPT_ERR_TRUNCATED, 0},
        {"dcffff", VI_RCPT_ERR_TRUNCATED, 0},
        {"950110dbffffffff41", VI_RCPT_ERR_TRUNCATED, 3},
        {"950110d9ff41", VI_RCPT_ERR_TRUNCATED, 3},
        {"950110b1575657", VI_RCPT_ERR_TRUNCATED, 3},
        {"950110b15756575a5a5a314a5a5857303030303031ddfffffff09090", VI_RCPT_ERR_TRUNCATED, 21},
        {"ce", VI_RCPT_ERR_TYPE, 0},
        {"", VI_RCPT_ERR_TRUNCATED, 0},
        {"90", VI_RCPT_ERR_SHAPE, 0},
        /* wrong types */
        {"95a131c0c0c0c0", VI_RCPT_ERR_TYPE, 1},
        {"95ffc0c0c0c0", VI_RCPT_ERR_TYPE, 1},
        {"95c0c0c0c0c0", VI_RCPT_ERR_TYPE, 1},
        {"95c3c0c0c0c0", VI_RCPT_ERR_TYPE, 1},
        {"95cb3ff0000000000000", VI_RCPT_ERR_TYPE, 1},
        {"9501d0ffc0c0c0", VI_RCPT_ERR_TYPE, 2},
        {"9501d3ffffffffffffffff", VI_RCPT_ERR_TYPE, 2},
        {"950110c4115756575a5a5a314a5a5857303030303031", VI_RCPT_ERR_TYPE, 3},
        {"950110b15756575a5a5a314a5a5857303030303031809090", VI_RCPT_ERR_TYPE, 21},
        {"950110b15756575a5a5a314a5a5857303030303031919301020390", VI_RCPT_ERR_SHAPE, 22},
        {"950110b15756575a5a5a314a5a5857303030303031919201a29090", VI_RCPT_ERR_TYPE, 24},
        {"950110b15756575a5a5a314a5a5857303030303031909192a16101", VI_RCPT_ERR_TYPE, 24},
        {"950110b15756575a5a5a314a5a5857303030303031909192010a", VI_RCPT_ERR_TYPE, 25},
        /* values */
        {"93020101", VI_RCPT_ERR_VERSION, 1}, /* the version is read before the count is judged */
        {"950211c0c0c0", VI_RCPT_ERR_VERSION, 1},
        {"940110c0c0c0", VI_RCPT_ERR_SHAPE, 0},
        {"96011000000000", VI_RCPT_ERR_SHAPE, 0},
        {"95010fc0c0c0", VI_RCPT_ERR_KIND, 2},
        {"950110b0c0c0c0", VI_RCPT_ERR_TRUNCATED, 3},
        {"950110a3414243", VI_RCPT_ERR_VIN, 3},
        {"950110b15756575a5a5a314a5a5857303030303031919205019090", VI_RCPT_ERR_ORDER, 22},
        {"950110b15756575a5a5a314a5a5857303030303031929201059203079090", VI_RCPT_ERR_ORDER, 25},
        {"950110b15756575a5a5a314a5a5857303030303031929205069201029090", VI_RCPT_ERR_ORDER, 25},
        {"950110b15756575a5a5a314a5a58573030303030319292010392040490", 0, 0}, /* adjacent is fine */
        {"950110b15756575a5a5a314a5a585730303030303190919201a2c328", VI_RCPT_ERR_UTF8, 25},
        {"950110b15756575a5a5a314a5a58573030303030319090", 0, 0},
        {"950110b15756575a5a5a314a5a585730303030303190909192", VI_RCPT_ERR_TRAILING, 23},
    };
    uint8_t p[512];
    size_t i, n, at;
    int rc;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        n = hexp(cases[i].hex, p);
        rc = parse_code(p, n, &at);
        if (rc != cases[i].rc || (rc && at != cases[i].at)) {
            g_failures++;
            fprintf(stderr, "receipt case %lu (%s): rc %d at %lu, expected %d at %lu\n", (unsigned long)i,
                    cases[i].hex, rc, (unsigned long)at, cases[i].rc, (unsigned long)cases[i].at);
        }
        g_checks++;
    }
    CHECK_EQ(vi_receipt_parse(NULL, 3, NULL, NULL), VI_RCPT_ERR_ARG);
}

/* Random damage to valid receipts: never a crash or an out-of-bounds read, and anything accepted
 * iterates to exactly the counts it declared, within the payload. */
static unsigned long g_fuzz_accepted;

static void test_receipt_fuzz(unsigned long rounds) {
    uint8_t base[4][512], p[600];
    size_t nb[4], n, at, k;
    unsigned long round;
    nb[0] = build_receipt(base[0], 0, 0, 0);
    nb[1] = build_receipt(base[1], 8, 4, 4);
    nb[2] = build_receipt(base[2], -2, 2, 1);
    nb[3] = hexp("950110b15756575a5a5a314a5a58573030303030319090", base[3]);
    for (round = 0; round < rounds; round++) {
        size_t which = rnd() % 4, edits = 1 + rnd() % 4, e;
        vi_receipt r;
        uint8_t *copy;
        int rc;
        n = nb[which];
        memcpy(p, base[which], n);
        for (e = 0; e < edits; e++) {
            size_t pos = n ? rnd() % n : 0;
            switch (rnd() % 4) {
            case 0: if (n) p[pos] = (uint8_t)rnd(); break;
            case 1: if (n) p[pos] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 2: n = pos; break; /* truncate */
            default: if (n < sizeof p - 1) memmove(p + pos + 1, p + pos, n - pos), p[pos] = (uint8_t)rnd(), n++;
            }
        }
        copy = malloc(n ? n : 1);
        memcpy(copy, p, n);
        rc = vi_receipt_parse(copy, n, &r, &at);
        if (rc == 0) {
            uint64_t a, b, prev = 0;
            g_fuzz_accepted++;
            const char *reason;
            size_t len, seen = 0;
            while (vi_receipt_next_stored(&r, &a, &b)) {
                CHECK(a <= b && (seen == 0 || a > prev));
                prev = b, seen++;
            }
            CHECK_EQ(seen, r.n_stored);
            for (k = 0; vi_receipt_next_rejected(&r, &a, &reason, &len); k++) {
                CHECK((const uint8_t *)reason >= copy && (const uint8_t *)reason + len <= copy + n);
            }
            CHECK_EQ(k, r.n_rejected);
        } else {
            CHECK(at <= n);
        }
        free(copy);
    }
}

/* ------------------------------------------------------------------ files */

static char *make_dir(char *tmpl) {
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpl, 256, "%s/vi_test_XXXXXX", base);
    return mkdtemp(tmpl);
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static void write_file(const char *dir, const char *name, const void *data, size_t n) {
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f) return;
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static size_t read_file(const char *dir, const char *name, uint8_t *out, size_t cap) {
    char path[512];
    FILE *f;
    size_t n;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (!f) return 0;
    n = fread(out, 1, cap, f);
    fclose(f);
    return n;
}

static void test_seq(void) {
    char tmpl[256], *dir = make_dir(tmpl);
    vi_seq s;
    uint64_t q;
    uint8_t text[32];
    if (!dir) {
        CHECK(dir != NULL);
        return;
    }
    CHECK_EQ(vi_seq_open(&s, dir, 0, 0), 0);
    CHECK_EQ(s.boot, 1);
    CHECK(vi_seq_next(&s, &q) == 0 && q == ((1ULL << 32) | 1));
    CHECK(vi_seq_next(&s, &q) == 0 && q == ((1ULL << 32) | 2));
    CHECK(read_file(dir, "boot_counter", text, sizeof text) == 2 && !memcmp(text, "1\n", 2));
    CHECK_EQ(vi_seq_open(&s, dir, 0, 0), 0);
    CHECK_EQ(s.boot, 2);
    write_file(dir, "boot_counter.tmp", "999\n", 4); /* a write that never got renamed: ignored */
    CHECK(vi_seq_open(&s, dir, (7ULL << 32) | 5, 1) == 0 && s.boot == 8); /* the buffer's floor wins */
    CHECK(vi_seq_open(&s, dir, (3ULL << 32) | 5, 1) == 0 && s.boot == 9);
    s.counter = 0xffffffffu; /* the counter would pass 2^32-1: a new boot first */
    CHECK(vi_seq_next(&s, &q) == 0 && q == ((10ULL << 32) | 1));
    CHECK(read_file(dir, "boot_counter", text, sizeof text) == 3 && !memcmp(text, "10\n", 3));
    write_file(dir, "boot_counter", "abc\n", 4);
    CHECK_EQ(vi_seq_open(&s, dir, 0, 0), VI_SEQ_ERR_CORRUPT);
    write_file(dir, "boot_counter", "", 0);
    CHECK_EQ(vi_seq_open(&s, dir, 0, 0), VI_SEQ_ERR_CORRUPT);
    write_file(dir, "boot_counter", "12", 2);
    CHECK_EQ(vi_seq_open(&s, dir, 0, 0), VI_SEQ_ERR_CORRUPT);
    write_file(dir, "boot_counter", "4294967296\n", 11);
    CHECK_EQ(vi_seq_open(&s, dir, 0, 0), VI_SEQ_ERR_CORRUPT);
    write_file(dir, "boot_counter", "4294967295\n", 11);
    CHECK_EQ(vi_seq_open(&s, dir, 0, 0), VI_SEQ_ERR_EXHAUSTED);
    remove_dir(dir);
}

/* ------------------------------------------------------------------ buffer */

static void payload_for(uint64_t seq, uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) p[i] = (uint8_t)(seq * 31 + i * 7);
}

static void test_crc(void) {
    CHECK(vi_crc32(0, (const uint8_t *)"123456789", 9) == 0xcbf43926u);
    CHECK(vi_crc32(vi_crc32(0, (const uint8_t *)"1234", 4), (const uint8_t *)"56789", 5) == 0xcbf43926u);
}

static void test_buffer_basics(void) {
    char tmpl[256], *dir = make_dir(tmpl);
    vi_buffer b;
    uint8_t p[3000], q[3000];
    size_t k;
    if (!dir) {
        CHECK(dir != NULL);
        return;
    }
    CHECK_EQ(vi_buffer_open(&b, dir, 1 << 20), 0);
    CHECK(b.size == 32 && b.pending == 0 && !b.has_high);
    payload_for(10, p, 100);
    CHECK_EQ(vi_buffer_append(&b, 10, 1, p, 100), 0);
    payload_for(11, p, 2000);
    CHECK_EQ(vi_buffer_append(&b, 11, 2, p, 2000), 0);
    payload_for(12, p, 1);
    CHECK_EQ(vi_buffer_append(&b, 12, 3, p, 1), 0);
    CHECK_EQ(vi_buffer_append(&b, 12, 1, p, 1), VI_BUF_ERR_SEQ);
    CHECK_EQ(vi_buffer_append(&b, 5, 1, p, 1), VI_BUF_ERR_SEQ);
    CHECK_EQ(vi_buffer_append(&b, 13, 4, p, 1), VI_BUF_ERR_ARG);
    CHECK_EQ(vi_buffer_append(&b, 13, 1, p, 0), VI_BUF_ERR_ARG);
    CHECK_EQ(vi_buffer_append(&b, 13, 1, p, VI_MAX_PAYLOAD + 1), VI_BUF_ERR_ARG);
    CHECK_EQ(vi_buffer_cover(&b, 11, 11, 0, &k), 0);
    CHECK_EQ(k, 1);
    CHECK_EQ(vi_buffer_cover(&b, 11, 11, 0, &k), 0); /* a second receipt for the same seq */
    CHECK_EQ(k, 0);
    CHECK_EQ(vi_buffer_commit(&b), 0);
    CHECK(b.n == 2 && b.pending == 2);
    vi_buffer_close(&b);
    CHECK_EQ(vi_buffer_open(&b, dir, 1 << 20), 0);
    CHECK(b.n == 2 && b.entries[0].seq == 10 && b.entries[1].seq == 12 && b.entries[1].kind == 3);
    CHECK(b.has_high && b.high_seq == 12);
    payload_for(10, q, 100);
    CHECK(vi_buffer_read(&b, &b.entries[0], p, sizeof p) == 100 && memcmp(p, q, 100) == 0);
    CHECK_EQ(vi_buffer_read(&b, &b.entries[0], p, 99), VI_BUF_ERR_ARG);
    /* damage on disk after open: the read notices, never hands out other bytes */
    {
        char path[512];
        int fd;
        uint8_t x = 0x55;
        snprintf(path, sizeof path, "%s/buffer.vib", dir);
        fd = open(path, O_WRONLY);
        CHECK(fd >= 0 && pwrite(fd, &x, 1, (off_t)(b.entries[0].offset + 40)) == 1);
        if (fd >= 0) close(fd);
        CHECK_EQ(vi_buffer_read(&b, &b.entries[0], p, sizeof p), VI_BUF_ERR_CORRUPT);
    }
    vi_buffer_close(&b);
    write_file(dir, "buffer.vib.tmp", "junk", 4);
    CHECK_EQ(vi_buffer_open(&b, dir, 1 << 20), 0); /* record 10 is now damaged: skipped, 12 kept */
    CHECK(b.n == 1 && b.entries[0].seq == 12 && b.recovery.corrupt_regions == 1);
    CHECK(access("buffer.vib.tmp", F_OK) != 0);
    vi_buffer_close(&b);
    CHECK_EQ(vi_buffer_open(&b, dir, 100), VI_BUF_ERR_ARG);
    remove_dir(dir);
}

typedef struct {
    uint64_t end; /* file offset after the record */
    int type;     /* 1 header, 2 message, 3 covered */
    uint64_t seq, len;
} rec_model;

/* The log of a small session, and where each record ends. */
static size_t build_log(const char *dir, rec_model *m) {
    static const size_t sizes[5] = {40, 1, 300, 77, 5};
    uint8_t p[512];
    vi_buffer b;
    size_t n = 0, i, k;
    CHECK_EQ(vi_buffer_open(&b, dir, 1 << 20), 0);
    m[n].end = b.size, m[n].type = 1, n++;
    for (i = 0; i < 5; i++) {
        payload_for(100 + i, p, sizes[i]);
        CHECK_EQ(vi_buffer_append(&b, 100 + i, 1 + (int)(i % 3), p, sizes[i]), 0);
        m[n].end = b.size, m[n].type = 2, m[n].seq = 100 + i, m[n].len = sizes[i], n++;
        if (i == 3) {
            CHECK_EQ(vi_buffer_cover(&b, 101, 102, 0, &k), 0); /* covers 101 and 102 */
            CHECK_EQ(vi_buffer_commit(&b), 0);
            m[n].end = b.size, m[n].type = 3, m[n].seq = 101, m[n].len = 102, n++;
        }
    }
    vi_buffer_close(&b);
    return n;
}

/* Truncate the log at every byte offset: recovery keeps exactly the complete records, cuts the rest,
 * and leaves a file the next append and recovery are happy with. */
static void test_buffer_truncations(void) {
    char t1[256], t2[256], *src = make_dir(t1), *dst = make_dir(t2);
    static uint8_t log[8192], p[512], q[512];
    rec_model m[16];
    size_t n, size, cut, i, j;
    if (!src || !dst) {
        CHECK(src && dst);
        return;
    }
    n = build_log(src, m);
    size = read_file(src, "buffer.vib", log, sizeof log);
    CHECK_EQ(size, m[n - 1].end);
    for (cut = 0; cut <= size; cut++) {
        vi_buffer b;
        uint64_t complete = 0, expect_pending = 0, high = 0;
        int covered = 0;
        for (i = 0; i < n && m[i].end <= cut; i++) complete = m[i].end;
        for (j = 0; j < i; j++) covered |= m[j].type == 3;
        for (j = 0; j < i; j++) {
            if (m[j].type != 2) continue;
            high = m[j].seq;
            if (!(covered && (m[j].seq == 101 || m[j].seq == 102))) expect_pending++;
        }
        write_file(dst, "buffer.vib", log, cut);
        if (vi_buffer_open(&b, dst, 1 << 20) != 0) {
            CHECK(!"open failed");
            continue;
        }
        CHECK_EQ(b.pending, expect_pending);
        CHECK_EQ(b.recovery.torn_bytes, cut - complete);
        CHECK_EQ(b.recovery.corrupt_regions, 0);
        CHECK_EQ(b.size, complete ? complete : 32); /* nothing left: a fresh header */
        CHECK(high ? b.has_high && b.high_seq == high : !b.has_high);
        for (j = 0; j < b.n; j++) {
            payload_for(b.entries[j].seq, q, b.entries[j].len);
            CHECK(vi_buffer_read(&b, &b.entries[j], p, sizeof p) == (long)b.entries[j].len &&
                  memcmp(p, q, b.entries[j].len) == 0);
        }
        payload_for(999, p, 10);
        CHECK_EQ(vi_buffer_append(&b, 999, 1, p, 10), 0);
        vi_buffer_close(&b);
        CHECK_EQ(vi_buffer_open(&b, dst, 1 << 20), 0);
        CHECK(b.pending == expect_pending + 1 && b.recovery.torn_bytes == 0 && b.entries[b.n - 1].seq == 999);
        vi_buffer_close(&b);
    }
    /* garbage after the last record (a file extended with zeros by a power cut): cut off */
    memset(log + size, 0, 700);
    write_file(dst, "buffer.vib", log, size + 700);
    {
        vi_buffer b;
        CHECK_EQ(vi_buffer_open(&b, dst, 1 << 20), 0);
        CHECK(b.recovery.torn_bytes == 700 && b.pending == 3 && b.size == size);
        vi_buffer_close(&b);
    }
    /* one damaged record in the middle: only it is lost */
    log[m[2].end - 5] ^= 0xff; /* inside message 101's payload... */
    log[m[3].end - 20] ^= 0xff; /* ...and 102's */
    write_file(dst, "buffer.vib", log, size);
    {
        vi_buffer b;
        CHECK_EQ(vi_buffer_open(&b, dst, 1 << 20), 0);
        CHECK_EQ(b.recovery.corrupt_regions, 1);
        CHECK_EQ(b.recovery.skipped_bytes, m[3].end - m[1].end);
        CHECK(b.pending == 3 && b.entries[0].seq == 100 && b.entries[1].seq == 103 && b.entries[2].seq == 104);
        vi_buffer_close(&b);
    }
    remove_dir(src);
    remove_dir(dst);
}

static void test_buffer_full_and_compaction(void) {
    char tmpl[256], *dir = make_dir(tmpl);
    static uint8_t p[2000];
    vi_buffer b;
    uint64_t seq = 1, size;
    size_t k, i;
    int rc;
    if (!dir) {
        CHECK(dir != NULL);
        return;
    }
    CHECK_EQ(vi_buffer_open(&b, dir, 8192), 0);
    while ((rc = vi_buffer_append(&b, seq, 1, p, 1000)) == 0) seq++;
    CHECK_EQ(rc, VI_BUF_ERR_FULL);
    CHECK(b.pending == 7 && b.size <= 8192); /* 32 + 7 x 1032 */
    size = b.size;
    CHECK_EQ(vi_buffer_append(&b, seq, 1, p, 1000), VI_BUF_ERR_FULL); /* refused, nothing changed */
    CHECK(b.size == size && b.pending == 7);
    CHECK_EQ(vi_buffer_cover(&b, 1, 2, 0, &k), 0);
    CHECK_EQ(k, 2);
    CHECK_EQ(vi_buffer_append(&b, seq, 1, p, 1000), 0); /* room made by compacting the covered ones */
    CHECK(b.compactions == 1 && b.pending == 6);
    vi_buffer_close(&b);
    CHECK_EQ(vi_buffer_open(&b, dir, 8192), 0);
    CHECK(b.pending == 6 && b.entries[0].seq == 3 && b.high_seq == seq);
    /* cover everything: compaction leaves a header holding the high-water mark */
    b.compact_min = 1;
    CHECK_EQ(vi_buffer_cover(&b, 0, UINT64_MAX, 0, &k), 0);
    CHECK_EQ(vi_buffer_commit(&b), 0);
    CHECK(b.compactions == 1 && b.size == 32 && b.pending == 0);
    vi_buffer_close(&b);
    CHECK_EQ(vi_buffer_open(&b, dir, 8192), 0);
    CHECK(b.pending == 0 && b.has_high && b.high_seq == seq);
    CHECK_EQ(vi_buffer_append(&b, seq, 1, p, 10), VI_BUF_ERR_SEQ); /* a reused seq, even after compaction */
    /* a larger log: covered records are compacted away once they are half of it */
    b.max_bytes = 1 << 22, b.compact_min = 4096;
    for (i = 0; i < 200; i++) CHECK_EQ(vi_buffer_append(&b, ++seq, 2, p, 100), 0);
    for (i = 0; i < 150; i++) {
        CHECK_EQ(vi_buffer_cover(&b, seq - 199 + i, seq - 199 + i, (int)(i % 2), &k), 0);
        CHECK_EQ(vi_buffer_commit(&b), 0);
    }
    CHECK(b.compactions >= 1 && b.pending == 50 && b.size < 32 + 50 * 132 + 150 * 32 + 1);
    vi_buffer_close(&b);
    CHECK_EQ(vi_buffer_open(&b, dir, 1 << 22), 0);
    CHECK(b.pending == 50 && b.entries[0].seq == seq - 49);
    vi_buffer_close(&b);
    remove_dir(dir);
}

/* Full with a little dead space: refused at once, no compaction that could not make room;
 * and a covered record that would not fit is replaced by a compaction. */
static void test_buffer_full_edges(void) {
    char tmpl[256], *dir = make_dir(tmpl);
    static uint8_t p[1000];
    vi_buffer b;
    size_t k, i;
    if (!dir) {
        CHECK(dir != NULL);
        return;
    }
    CHECK_EQ(vi_buffer_open(&b, dir, 8192), 0);
    for (i = 1; i <= 6; i++) CHECK_EQ(vi_buffer_append(&b, i, 1, p, 1000), 0);
    CHECK_EQ(vi_buffer_append(&b, 7, 1, p, 100), 0);
    CHECK_EQ(vi_buffer_append(&b, 8, 1, p, 1000), 0);
    CHECK_EQ(vi_buffer_append(&b, 9, 1, p, 1000), VI_BUF_ERR_FULL);
    CHECK_EQ(vi_buffer_cover(&b, 7, 7, 0, &k), 0);
    for (i = 0; i < 5; i++) CHECK_EQ(vi_buffer_append(&b, 9, 1, p, 1000), VI_BUF_ERR_FULL);
    CHECK_EQ(b.compactions, 0);
    vi_buffer_close(&b);
    remove_dir(dir);
    dir = make_dir(tmpl);
    CHECK_EQ(vi_buffer_open(&b, dir, 32 + 7 * 1032 + 20), 0);
    for (i = 1; i <= 7; i++) CHECK_EQ(vi_buffer_append(&b, i, 1, p, 1000), 0);
    CHECK_EQ(vi_buffer_cover(&b, 1, 1, 0, &k), 0);
    CHECK(k == 1 && b.compactions == 1 && b.size == 32 + 6 * 1032 && b.size <= b.max_bytes);
    vi_buffer_close(&b);
    CHECK_EQ(vi_buffer_open(&b, dir, 32 + 7 * 1032 + 20), 0);
    CHECK(b.pending == 6 && b.entries[0].seq == 2);
    vi_buffer_close(&b);
    remove_dir(dir);
}

/* ------------------------------------------------------------------ outbox */

typedef struct {
    int next_mid, refuse, n;
    uint64_t too_big; /* the client refuses this seq only */
    char topics[64][64];
    uint64_t seqs[64];
} fake_mqtt;

static int fake_publish(void *ctx, const char *topic, const uint8_t *payload, size_t len, int *mid) {
    fake_mqtt *f = ctx;
    if (f->refuse) return -1;
    if (f->too_big && payload[0] == f->too_big) return 25;
    if (f->n < 64) {
        snprintf(f->topics[f->n], sizeof f->topics[0], "%s", topic);
        f->seqs[f->n] = payload[0] | (uint64_t)payload[1] << 8; /* test payloads start with their seq */
    }
    f->n++;
    *mid = ++f->next_mid;
    (void)len;
    return 0;
}

static size_t receipt_bytes(uint8_t *out, const char *vin, const uint64_t (*ranges)[2], size_t nr, uint64_t rej,
                            const char *reason) {
    mp m = {out, 0};
    size_t i;
    mp_array(&m, 5, 0), mp_uint(&m, 1, 0), mp_uint(&m, 16, 0), mp_str(&m, vin, 17, 0);
    mp_array(&m, nr, 0);
    for (i = 0; i < nr; i++) mp_array(&m, 2, 0), mp_uint(&m, ranges[i][0], 0), mp_uint(&m, ranges[i][1], 0);
    if (reason) mp_array(&m, 1, 0), mp_array(&m, 2, 0), mp_uint(&m, rej, 0), mp_str(&m, reason, strlen(reason), 0);
    else mp_array(&m, 0, 0);
    return m.n;
}

static void test_outbox(void) {
    char tmpl[256], *dir = make_dir(tmpl), logtext[2048];
    static vi_outbox o;
    vi_buffer b;
    fake_mqtt f;
    uint8_t p[16], r[256];
    uint64_t s;
    const uint64_t r1[1][2] = {{1, 2}}, r2[2][2] = {{5, 30}, {40, 40}};
    size_t n;
    FILE *log = tmpfile();
    if (!dir || !log) {
        CHECK(dir && log);
        return;
    }
    memset(&f, 0, sizeof f);
    CHECK_EQ(vi_buffer_open(&b, dir, 1 << 20), 0);
    for (s = 1; s <= 50; s++) {
        p[0] = (uint8_t)s, p[1] = 0;
        CHECK_EQ(vi_buffer_append(&b, s, s == 3 ? 3 : s == 2 ? 2 : 1, p, 2), 0);
    }
    vi_outbox_init(&o, &b, VIN, fake_publish, &f);
    o.log = log, o.window = 20, o.receipt_timeout_ms = 1000, o.max_backoff_ms = 3000;
    CHECK_EQ(vi_outbox_pump(&o, 0), 0); /* not connected: nothing */
    CHECK_EQ(f.n, 0);
    /* a message the client refuses (too big for the broker) waits; the others go on */
    f.too_big = 1;
    vi_outbox_init(&o, &b, VIN, fake_publish, &f);
    o.log = log, o.window = 20, o.receipt_timeout_ms = 1000, o.max_backoff_ms = 3000;
    vi_outbox_connected(&o);
    CHECK_EQ(vi_outbox_pump(&o, 0), 0);
    CHECK(f.n == 20 && f.seqs[0] == 2 && vi_outbox_count(&o, VI_SEND_REFUSED) == 1);
    f.too_big = 0, f.n = 0, f.next_mid = 0;
    for (s = 1; s <= 50; s++) b.entries[s - 1].state = VI_SEND_DUE, b.entries[s - 1].attempts = 0;
    vi_outbox_init(&o, &b, VIN, fake_publish, &f);
    o.log = log, o.window = 20, o.receipt_timeout_ms = 1000, o.max_backoff_ms = 3000;
    vi_outbox_connected(&o);
    CHECK_EQ(vi_outbox_pump(&o, 0), 0);
    CHECK(f.n == 20 && f.seqs[0] == 1 && f.seqs[19] == 20); /* the window, oldest first */
    CHECK(!strcmp(f.topics[0], "vi/v1/WVWZZZ1JZXW000001/signals"));
    CHECK(!strcmp(f.topics[1], "vi/v1/WVWZZZ1JZXW000001/events"));
    CHECK(!strcmp(f.topics[2], "vi/v1/WVWZZZ1JZXW000001/can"));
    vi_outbox_puback(&o, 1, 0);
    vi_outbox_puback(&o, 2, 0x87); /* refused by the broker: counted, retried after the timeout */
    vi_outbox_puback(&o, 999, 0);  /* unknown mid: ignored */
    CHECK(o.stats.acked == 1 && o.stats.ack_errors == 1 && o.n_slots == 18);
    CHECK(vi_outbox_count(&o, VI_SEND_REFUSED) == 1 && vi_outbox_count(&o, VI_SEND_WAITING) == 1);
    CHECK_EQ(vi_outbox_pump(&o, 10), 0);
    CHECK_EQ(f.n, 22);
    n = receipt_bytes(r, VIN, r1, 1, 0, NULL);
    CHECK_EQ(vi_outbox_receipt(&o, r, n), 0);
    CHECK(b.pending == 48 && o.stats.stored == 2);
    n = receipt_bytes(r, VIN, r2, 2, 4, "bad\nthing\xc3\xa9");
    CHECK_EQ(vi_outbox_receipt(&o, r, n), 0);
    CHECK(b.pending == 20 && o.stats.stored == 29 && o.stats.rejected == 1); /* 3, 31..39, 41..50 */
    n = receipt_bytes(r, "WVWZZZ1JZXW000002", r1, 1, 0, NULL);
    CHECK_EQ(vi_outbox_receipt(&o, r, n), VI_OUTBOX_IGNORED);
    CHECK_EQ(vi_outbox_receipt(&o, r, n - 1), VI_OUTBOX_IGNORED);
    CHECK(o.stats.receipts == 2 && o.stats.receipts_ignored == 2);
    /* left: 3 (in flight since 0), 31..39 and 41..50 (never sent) */
    f.n = 0;
    CHECK_EQ(vi_outbox_pump(&o, 500), 0);
    CHECK_EQ(f.n, 19);
    CHECK_EQ(o.n_slots, 20);
    f.n = 0;
    CHECK_EQ(vi_outbox_pump(&o, 1001), 0); /* 3's receipt timeout (1000 ms) passed: sent again */
    CHECK(f.n == 1 && f.seqs[0] == 3 && o.stats.republished == 1);
    f.n = 0;
    CHECK_EQ(vi_outbox_pump(&o, 2000), 0); /* 31..50 time out at 1500; 3's second wait is 2000 ms */
    CHECK(f.n == 19 && f.seqs[0] == 31 && f.seqs[18] == 50 && o.stats.republished == 20);
    f.n = 0;
    CHECK_EQ(vi_outbox_pump(&o, 3001), 0);
    CHECK(f.n == 1 && f.seqs[0] == 3);
    /* a reconnect sends everything not covered again */
    vi_outbox_disconnected(&o);
    f.refuse = 1;
    vi_outbox_connected(&o);
    CHECK_EQ(vi_outbox_pump(&o, 3100), 0);
    CHECK_EQ(vi_outbox_count(&o, VI_SEND_DUE), 20);
    f.refuse = 0, f.n = 0;
    CHECK_EQ(vi_outbox_pump(&o, 3100), 0);
    CHECK(f.n == 20 && vi_outbox_count(&o, VI_SEND_INFLIGHT) == 20);
    rewind(log);
    n = fread(logtext, 1, sizeof logtext - 1, log);
    logtext[n] = '\0';
    CHECK(strstr(logtext, "seq 4 rejected by the gateway: bad\\x0athing\\xc3\\xa9\n") != NULL);
    CHECK(strstr(logtext, "broker refused the publish (reason 0x87)") != NULL);
    CHECK(strstr(logtext, "ignored a receipt for another VIN") != NULL);
    CHECK(strstr(logtext, "seq 1: the MQTT client refused it (25)") != NULL);
    fclose(log);
    vi_buffer_close(&b);
    remove_dir(dir);
}

int main(int argc, char **argv) {
    const char *golden = argc > 1 ? argv[1] : NULL;
    int mark = 0;
    if (golden) test_golden(golden);
    test_uint_forms();
    test_block_fields();
    test_vins();
    test_counts_and_arrays();
    test_buffer_sizes();
    test_events();
    test_utf8();
    test_can();
    test_quantize();
    printf("encoder:  %d checks%s\n", g_checks, golden ? " (golden vectors included)" : " (no golden dir given)");
    mark = g_checks;
    test_receipt_widths();
    test_receipt_truncations();
    test_receipt_hostile();
    test_receipt_fuzz(200000);
    printf("receipts: %d checks (200000 mutated receipts, %lu of them still valid)\n", g_checks - mark,
           g_fuzz_accepted);
    mark = g_checks;
    test_seq();
    test_crc();
    test_buffer_basics();
    test_buffer_truncations();
    test_buffer_full_and_compaction();
    test_buffer_full_edges();
    printf("seq, buffer: %d checks (the log truncated at every byte offset)\n", g_checks - mark);
    mark = g_checks;
    test_outbox();
    printf("outbox:   %d checks\n", g_checks - mark);
    if (g_failures) {
        printf("test_vi: %d of %d checks FAILED\n", g_failures, g_checks);
        return 1;
    }
    printf("test_vi: all %d checks passed\n", g_checks);
    return 0;
}
