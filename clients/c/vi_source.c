/* vi_source.c: the example publisher's generator and line reader. See vi_source.h. */
#include "vi_source.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

long vi_message_encode(const vi_message *m, const char *vin, uint64_t seq, uint8_t *out, size_t cap) {
    switch (m->kind) {
    case VI_KIND_SIGNALS: return vi_encode_signals(out, cap, vin, seq, m->base_ts, m->blocks, m->n_blocks);
    case VI_KIND_EVENTS: return vi_encode_events(out, cap, vin, seq, m->base_ts, m->events, m->n_events);
    case VI_KIND_CAN: return vi_encode_can(out, cap, vin, seq, m->base_ts, m->frames, m->n_frames);
    default: return VI_ERR_COUNT;
    }
}

static void clear(vi_message *m) {
    m->kind = 0;
    m->base_ts = 0;
    m->n_blocks = m->n_events = m->n_frames = m->items = 0;
    m->value_sum = 0.0;
}

/* --- generator --- */

static uint64_t rnd(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static const char *const APPS[4] = {
    "com.vendor.radio",
    "com.vendor.navigation: Z\xc3\xbcrich \xe2\x86\x92 K\xc3\xb6ln", /* multi-byte UTF-8 */
    "com.vendor.\xe9\x9f\xb3\xe4\xb9\x90",
    "",
};

void vi_generator_init(vi_generator *g, uint64_t seed, int64_t start_ms, unsigned samples, unsigned period_ms,
                       unsigned events_every) {
    memset(g, 0, sizeof *g);
    g->rng = seed * 0x9e3779b97f4a7c15ULL + 1;
    g->next_ts = start_ms;
    g->speed = 500;
    g->odo_mm = (int64_t)(12345678 + rnd(&g->rng) % 1000000) * 1000;
    g->samples = samples < 1 ? 1 : samples > VI_SRC_MAX_SAMPLES / 2 ? VI_SRC_MAX_SAMPLES / 2 : samples;
    g->period_ms = period_ms < 1 ? 1 : period_ms;
    g->events_every = events_every;
}

static void generate_events(vi_generator *g, vi_message *m) {
    const char *app = APPS[(g->index / g->events_every) % 4];
    size_t len = strlen(app), i;
    m->kind = VI_KIND_EVENTS;
    m->n_events = m->items = 2;
    for (i = 0; i < 2; i++) {
        memcpy(m->texts[i], app, len);
        m->events[i].event_id = (uint16_t)(i + 1); /* app_launched, app_closed */
        m->events[i].ts_ms = g->next_ts + (int64_t)(i * g->samples * g->period_ms / 2);
        m->events[i].value = i ? (int64_t)(g->samples * g->period_ms / 2) : 0; /* foreground ms */
        m->events[i].text = m->texts[i];
        m->events[i].text_len = len;
    }
    m->base_ts = (uint64_t)g->next_ts;
}

static void generate_signals(vi_generator *g, vi_message *m) {
    size_t n = g->samples, i;
    int64_t *speed_ts = m->ts, *speed = m->raw, *odo_ts = m->ts + n, *odo = m->raw + n;
    for (i = 0; i < n; i++) {
        int64_t t = g->next_ts + (int64_t)(i * g->period_ms);
        int64_t jitter = (int64_t)(rnd(&g->rng) % 5) - 2;
        g->speed += (int32_t)(rnd(&g->rng) % 41) - 20;
        g->speed = g->speed < 0 ? 0 : g->speed > 2500 ? 2500 : g->speed;
        g->odo_mm += (int64_t)g->speed * g->period_ms / 36; /* 0.1 km/h over period_ms, in mm */
        speed_ts[i] = t + jitter >= 0 ? t + jitter : t;
        speed[i] = g->speed;
        odo_ts[i] = t;
        odo[i] = g->odo_mm / 1000;
        m->value_sum += vi_raw_to_value(speed[i], -1) + vi_raw_to_value(odo[i], 0);
    }
    m->kind = VI_KIND_SIGNALS;
    m->n_blocks = 2;
    m->blocks[0].signal_id = 1; /* Vehicle.Speed, 0.1 km/h */
    m->blocks[0].scale_exp = -1;
    m->blocks[1].signal_id = 2; /* Vehicle.TraveledDistance, m */
    m->blocks[1].scale_exp = 0;
    for (i = 0; i < 2; i++) {
        m->blocks[i].count = n;
        m->blocks[i].ts_ms = m->ts + i * n;
        m->blocks[i].raw = m->raw + i * n;
    }
    m->items = 2 * n;
    m->base_ts = (uint64_t)g->next_ts;
    g->next_ts += (int64_t)(n * g->period_ms);
}

void vi_generator_next(vi_generator *g, vi_message *m) {
    clear(m);
    if (g->events_every && g->index % g->events_every == g->events_every - 1) generate_events(g, m);
    else generate_signals(g, m);
    g->index++;
}

/* --- line reader --- */

void vi_reader_init(vi_reader *r, FILE *f) {
    memset(r, 0, sizeof *r);
    r->f = f;
}

static int bad(vi_reader *r, char *err, size_t errlen, const char *why) {
    snprintf(err, errlen, "input line %lu: %s", r->line, why);
    return -1;
}

static int parse_int(const char *s, int64_t lo, int64_t hi, int64_t *v) {
    char *end;
    long long x;
    errno = 0;
    x = strtoll(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi) return -1;
    *v = (int64_t)x;
    return 0;
}

/* Splits off the next comma-separated field (NULL when there is none). */
static char *field(char **p) {
    char *start = *p, *comma;
    if (!start) return NULL;
    comma = strchr(start, ',');
    if (comma) *comma = '\0', *p = comma + 1;
    else *p = NULL;
    return start;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int block_for(vi_message *m, uint16_t sid, int exp) {
    size_t b;
    for (b = 0; b < m->n_blocks; b++) {
        if (m->blocks[b].signal_id == sid && m->blocks[b].scale_exp == exp) return (int)b;
    }
    if (m->n_blocks == VI_SRC_MAX_BLOCKS) return -1;
    m->blocks[m->n_blocks].signal_id = sid;
    m->blocks[m->n_blocks].scale_exp = exp;
    m->blocks[m->n_blocks].count = 0;
    return (int)m->n_blocks++;
}

/* 1: added; 0: the message is full (the line starts the next one); -1: bad line. */
static int add_sample(vi_reader *r, vi_message *m, char *rest, const char **why) {
    int64_t ts, sid, exp, raw;
    char *f1 = field(&rest), *f2 = field(&rest), *f3 = field(&rest), *f4 = field(&rest);
    int b;
    *why = "expected S,<ts_ms>,<signal_id>,<scale_exp>,<raw>";
    if (!f4 || rest || parse_int(f1, INT64_MIN, INT64_MAX, &ts) || parse_int(f2, 0, 65535, &sid) ||
        parse_int(f3, -128, 127, &exp) || parse_int(f4, INT64_MIN, INT64_MAX, &raw)) {
        return -1;
    }
    if (r->n == VI_SRC_MAX_SAMPLES || (b = block_for(m, (uint16_t)sid, (int)exp)) < 0) return 0;
    r->block_of[r->n] = (uint8_t)b;
    r->s_ts[r->n] = ts, r->s_raw[r->n] = raw;
    r->n++;
    m->blocks[b].count++;
    return 1;
}

static int add_event(vi_message *m, char *rest, const char **why) {
    int64_t ts, id, value;
    char *f1 = field(&rest), *f2 = field(&rest), *f3 = field(&rest);
    vi_event *e = &m->events[m->n_events];
    size_t len;
    *why = "expected E,<ts_ms>,<event_id>,<value>,<text>";
    if (!rest || parse_int(f1, INT64_MIN, INT64_MAX, &ts) || parse_int(f2, 0, 65535, &id) ||
        parse_int(f3, INT64_MIN, INT64_MAX, &value)) {
        return -1;
    }
    if (m->n_events == VI_SRC_MAX_EVENTS) return 0;
    len = strlen(rest);
    if (len > VI_MAX_TEXT) return *why = "event text over 255 bytes", -1;
    memcpy(m->texts[m->n_events], rest, len + 1);
    e->event_id = (uint16_t)id, e->ts_ms = ts, e->value = value;
    e->text = m->texts[m->n_events], e->text_len = len;
    m->n_events++;
    return 1;
}

static int add_frame(vi_message *m, char *rest, const char **why) {
    int64_t ts, bus, id, ext, fd;
    char *f[6];
    size_t i, len;
    vi_can_frame *c = &m->frames[m->n_frames];
    for (i = 0; i < 6; i++) f[i] = field(&rest);
    *why = "expected C,<ts_ms>,<bus>,<id>,<extended 0|1>,<fd 0|1>,<hex data>";
    if (!f[5] || rest || parse_int(f[0], INT64_MIN, INT64_MAX, &ts) || parse_int(f[1], 0, 255, &bus) ||
        parse_int(f[2], 0, 0xffffffffLL, &id) || parse_int(f[3], 0, 1, &ext) || parse_int(f[4], 0, 1, &fd)) {
        return -1;
    }
    len = strlen(f[5]);
    if (len % 2 || len > 128) return *why = "CAN data: an even number of hex digits, at most 64 bytes", -1;
    if (m->n_frames == VI_SRC_MAX_FRAMES) return 0;
    for (i = 0; i < len / 2; i++) {
        int hi = hexval(f[5][2 * i]), lo = hexval(f[5][2 * i + 1]);
        if (hi < 0 || lo < 0) return *why = "CAN data: not hex", -1;
        m->data[m->n_frames][i] = (uint8_t)(hi << 4 | lo);
    }
    c->ts_ms = ts, c->bus = (uint8_t)bus, c->id = (uint32_t)id;
    c->extended = (uint8_t)ext, c->fd = (uint8_t)fd, c->len = (uint8_t)(len / 2);
    c->data = m->data[m->n_frames];
    m->n_frames++;
    return 1;
}

/* Samples in input order -> blocks, each block's samples contiguous and in input order. */
static void group_samples(vi_reader *r, vi_message *m) {
    size_t start[VI_SRC_MAX_BLOCKS], fill[VI_SRC_MAX_BLOCKS], b, i, off = 0;
    for (b = 0; b < m->n_blocks; b++) start[b] = fill[b] = off, off += m->blocks[b].count;
    for (i = 0; i < r->n; i++) {
        size_t at = fill[r->block_of[i]]++;
        m->ts[at] = r->s_ts[i], m->raw[at] = r->s_raw[i];
        m->value_sum += vi_raw_to_value(r->s_raw[i], m->blocks[r->block_of[i]].scale_exp);
    }
    for (b = 0; b < m->n_blocks; b++) m->blocks[b].ts_ms = m->ts + start[b], m->blocks[b].raw = m->raw + start[b];
    m->items = r->n;
}

static int64_t min_ts(const vi_reader *r, const vi_message *m) {
    int64_t t = INT64_MAX;
    size_t i;
    for (i = 0; m->kind == VI_KIND_SIGNALS && i < r->n; i++) t = r->s_ts[i] < t ? r->s_ts[i] : t;
    for (i = 0; i < m->n_events; i++) t = m->events[i].ts_ms < t ? m->events[i].ts_ms : t;
    for (i = 0; i < m->n_frames; i++) t = m->frames[i].ts_ms < t ? m->frames[i].ts_ms : t;
    return t < 0 ? 0 : t; /* a negative timestamp is refused by the encoder, not here */
}

/* Reads the next line into buf (held one first); 0 at the end of input, -1 when too long. */
static int read_line(vi_reader *r, char *buf) {
    size_t n;
    if (r->has_held) {
        memcpy(buf, r->held, sizeof r->held);
        r->has_held = 0;
        return 1;
    }
    if (r->eof || !fgets(buf, VI_SRC_LINE_MAX + 2, r->f)) return r->eof = 1, 0;
    r->line++;
    n = strlen(buf);
    if (n && buf[n - 1] == '\n') buf[--n] = '\0';
    else if (!feof(r->f)) return -1;
    if (n && buf[n - 1] == '\r') buf[--n] = '\0';
    return 1;
}

static int add_line(vi_reader *r, vi_message *m, char *line, int kind, const char **why) {
    char *rest = line + 2;
    if (kind == VI_KIND_SIGNALS) return add_sample(r, m, rest, why);
    if (kind == VI_KIND_EVENTS) return add_event(m, rest, why);
    return add_frame(m, rest, why);
}

int vi_reader_next(vi_reader *r, vi_message *m, char *err, size_t errlen) {
    char line[VI_SRC_LINE_MAX + 2], copy[VI_SRC_LINE_MAX + 2];
    const char *why = "";
    int got, kind, rc;
    clear(m);
    r->n = 0;
    while ((got = read_line(r, line)) != 0) {
        if (got < 0) return bad(r, err, errlen, "longer than 1024 bytes");
        if (!line[0] && m->kind) break; /* a blank line ends the message */
        if (!line[0] || line[0] == '#') continue;
        kind = line[0] == 'S' ? VI_KIND_SIGNALS : line[0] == 'E' ? VI_KIND_EVENTS : line[0] == 'C' ? VI_KIND_CAN : 0;
        if (!kind || line[1] != ',') return bad(r, err, errlen, "expected S, E or C, then a comma");
        memcpy(copy, line, sizeof line); /* fields are cut in place; keep the line to hold it */
        rc = m->kind && kind != m->kind ? 0 : add_line(r, m, line, kind, &why);
        if (rc < 0) return bad(r, err, errlen, why);
        if (rc == 0) { /* it belongs to the next message */
            memcpy(r->held, copy, sizeof copy);
            r->has_held = 1;
            break;
        }
        if (!m->kind) r->first = r->line;
        m->kind = kind;
    }
    if (!m->kind) return 0;
    if (m->kind == VI_KIND_SIGNALS) group_samples(r, m);
    else m->items = m->kind == VI_KIND_EVENTS ? m->n_events : m->n_frames;
    m->base_ts = (uint64_t)min_ts(r, m);
    return 1;
}
