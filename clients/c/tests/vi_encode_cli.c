/* vi_encode_cli: drives the C encoder from text, for the byte-for-byte comparison with the Python encoder.
 *
 * One case per input line, whitespace-separated tokens:
 *   S <vin> <seq> <base_ts> <n_blocks> { <signal_id> <scale_exp> <count> <ts> x count <raw> x count } x n_blocks
 *   E <vin> <seq> <base_ts> <count> { <event_id> <ts> <value> <text as hex, or -> } x count
 *   C <vin> <seq> <base_ts> <count> { <ts> <bus> <id> <extended> <fd> <data as hex, or -> } x count
 *   Q <scale_exp> <the IEEE-754 bits of a double, 16 hex digits>
 * One output line per case: the payload as lower-case hex, or "ERR <code>"; for Q the raw integer
 * or "ERR <code>"; "BAD <why>" for a line it cannot read.
 *
 * Every successful encoding is repeated into a heap buffer of exactly its length and one byte
 * shorter (which must give VI_ERR_BUFFER), so AddressSanitizer sees any write past the end.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../vi_encode.h"

static uint8_t g_out[VI_MAX_PAYLOAD + 64];

typedef struct {
    char *save;
    int bad;
} tok;

static char *next(tok *t) {
    char *s = strtok_r(NULL, " \t\r\n", &t->save);
    if (!s) t->bad = 1;
    return s ? s : "";
}

static int64_t i64(tok *t) {
    char *s = next(t), *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end) t->bad = 1;
    return (int64_t)v;
}

static uint64_t u64(tok *t) {
    char *s = next(t), *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') t->bad = 1;
    return (uint64_t)v;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Decodes hex (or "-" for nothing) into a new heap block; *len its length. */
static uint8_t *hex(tok *t, size_t *len) {
    char *s = next(t);
    size_t n = strlen(s), i;
    uint8_t *out;
    *len = 0;
    if (!strcmp(s, "-")) return NULL;
    if (n % 2) return t->bad = 1, NULL;
    out = malloc(n / 2 + 1);
    if (!out) return t->bad = 1, NULL;
    for (i = 0; i < n / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) t->bad = 1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = n / 2;
    return out;
}

typedef long (*encode_fn)(uint8_t *out, size_t cap, const void *items, size_t n, const char *vin, uint64_t seq,
                          uint64_t base);

static long enc_signals(uint8_t *out, size_t cap, const void *items, size_t n, const char *vin, uint64_t seq,
                        uint64_t base) {
    return vi_encode_signals(out, cap, vin, seq, base, items, n);
}
static long enc_events(uint8_t *out, size_t cap, const void *items, size_t n, const char *vin, uint64_t seq,
                       uint64_t base) {
    return vi_encode_events(out, cap, vin, seq, base, items, n);
}
static long enc_can(uint8_t *out, size_t cap, const void *items, size_t n, const char *vin, uint64_t seq,
                    uint64_t base) {
    return vi_encode_can(out, cap, vin, seq, base, items, n);
}

/* Encodes, prints the result, and re-checks the exact and the one-short buffer. */
static void emit(encode_fn fn, const void *items, size_t n, const char *vin, uint64_t seq, uint64_t base) {
    long len = fn(g_out, sizeof g_out, items, n, vin, seq, base), i;
    uint8_t *exact;
    if (len < 0) {
        printf("ERR %ld\n", len);
        return;
    }
    exact = malloc((size_t)len);
    if (!exact || fn(exact, (size_t)len, items, n, vin, seq, base) != len || memcmp(exact, g_out, (size_t)len) ||
        fn(exact, (size_t)len - 1, items, n, vin, seq, base) != VI_ERR_BUFFER) {
        printf("BAD exact-size re-encoding differs\n");
        free(exact);
        return;
    }
    free(exact);
    for (i = 0; i < len; i++) printf("%02x", g_out[i]);
    putchar('\n');
}

static void signals_case(tok *t, const char *vin, uint64_t seq, uint64_t base) {
    size_t nb = (size_t)u64(t), b, i, total = 0;
    vi_signal_block *blocks = calloc(nb ? nb : 1, sizeof *blocks);
    int64_t **cols = calloc(nb ? 2 * nb : 1, sizeof *cols);
    for (b = 0; blocks && cols && b < nb && !t->bad; b++) {
        blocks[b].signal_id = (uint16_t)u64(t);
        blocks[b].scale_exp = (int)i64(t);
        blocks[b].count = (size_t)u64(t);
        if (blocks[b].count > 70000) t->bad = 1;
        if (t->bad) break;
        cols[2 * b] = malloc((blocks[b].count + 1) * sizeof(int64_t));
        cols[2 * b + 1] = malloc((blocks[b].count + 1) * sizeof(int64_t));
        if (!cols[2 * b] || !cols[2 * b + 1]) t->bad = 1;
        for (i = 0; !t->bad && i < blocks[b].count; i++) cols[2 * b][i] = i64(t);
        for (i = 0; !t->bad && i < blocks[b].count; i++) cols[2 * b + 1][i] = i64(t);
        blocks[b].ts_ms = cols[2 * b], blocks[b].raw = cols[2 * b + 1];
        total += blocks[b].count;
    }
    if (!blocks || !cols || t->bad) printf("BAD signals case\n");
    else emit(enc_signals, blocks, nb, vin, seq, base);
    for (b = 0; cols && b < 2 * nb; b++) free(cols[b]);
    free(cols);
    free(blocks);
    (void)total;
}

static void events_case(tok *t, const char *vin, uint64_t seq, uint64_t base) {
    size_t n = (size_t)u64(t), i;
    vi_event *ev = n <= 70000 ? calloc(n ? n : 1, sizeof *ev) : NULL;
    for (i = 0; ev && i < n && !t->bad; i++) {
        ev[i].event_id = (uint16_t)u64(t);
        ev[i].ts_ms = i64(t);
        ev[i].value = i64(t);
        ev[i].text = (const char *)hex(t, &ev[i].text_len);
    }
    if (!ev || t->bad) printf("BAD events case\n");
    else emit(enc_events, ev, n, vin, seq, base);
    for (i = 0; ev && i < n; i++) free((void *)ev[i].text);
    free(ev);
}

static void can_case(tok *t, const char *vin, uint64_t seq, uint64_t base) {
    size_t n = (size_t)u64(t), i, len;
    vi_can_frame *f = n <= 70000 ? calloc(n ? n : 1, sizeof *f) : NULL;
    for (i = 0; f && i < n && !t->bad; i++) {
        f[i].ts_ms = i64(t);
        f[i].bus = (uint8_t)u64(t);
        f[i].id = (uint32_t)u64(t);
        f[i].extended = (uint8_t)u64(t);
        f[i].fd = (uint8_t)u64(t);
        f[i].data = hex(t, &len);
        f[i].len = (uint8_t)len;
        if (len > 255) t->bad = 1;
    }
    if (!f || t->bad) printf("BAD can case\n");
    else emit(enc_can, f, n, vin, seq, base);
    for (i = 0; f && i < n; i++) free((void *)f[i].data);
    free(f);
}

static void quantize_case(tok *t) {
    int exp = (int)i64(t);
    char *s = next(t), *end;
    unsigned long long bits;
    double x;
    int64_t raw = 0;
    int rc;
    errno = 0;
    bits = strtoull(s, &end, 16);
    if (t->bad || errno || *end) {
        printf("BAD quantize case\n");
        return;
    }
    memcpy(&x, &bits, sizeof x);
    rc = vi_quantize(x, exp, &raw);
    if (rc) printf("ERR %d\n", rc);
    else printf("%lld\n", (long long)raw);
}

int main(void) {
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        tok t = {NULL, 0};
        char *kind = strtok_r(line, " \t\r\n", &t.save), *vin;
        uint64_t seq, base;
        if (!kind) continue;
        if (!strcmp(kind, "Q")) {
            quantize_case(&t);
            continue;
        }
        vin = next(&t);
        seq = u64(&t);
        base = u64(&t);
        if (t.bad) printf("BAD header\n");
        else if (!strcmp(kind, "S")) signals_case(&t, vin, seq, base);
        else if (!strcmp(kind, "E")) events_case(&t, vin, seq, base);
        else if (!strcmp(kind, "C")) can_case(&t, vin, seq, base);
        else printf("BAD kind %s\n", kind);
    }
    free(line);
    return 0;
}
