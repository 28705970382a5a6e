/* vi_publisher: example head-unit publisher on libmosquitto (MQTT 5, QoS 1).
 *
 * generate or read samples -> encode (vi_encode) -> seq (vi_seq) -> fsync into
 * the buffer (vi_buffer) -> publish -> keep until a receipt covers it
 * (vi_outbox). One thread: mosquitto_loop() is called from the main loop.
 *
 * Run `vi_publisher --help` for the options. stdout: one JSON summary line at
 * the end. stderr: one line per notable event. Exit status: 0 done (or stopped
 * by SIGINT/SIGTERM), 1 error, 2 usage, 3 gave up (broker unreachable for
 * --connect-timeout-ms, or messages still unreceipted after --wait-receipts-ms).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "vi_buffer.h"
#include "vi_encode.h"
#include "vi_outbox.h"
#include "vi_seq.h"
#include "vi_source.h"

#define EXIT_USAGE 2
#define EXIT_GAVE_UP 3

typedef struct {
    const char *host, *vin, *state, *client_id, *input, *status_path, *tls_ca, *tls_cert, *tls_key, *username;
    long port, keepalive, interval_ms, samples, period_ms, events_every, window;
    long receipt_timeout_ms, max_backoff_ms, wait_receipts_ms, connect_timeout_ms, session_expiry_s;
    long status_interval_ms;
    long long messages, start_ms, buffer_max_bytes;
    unsigned long long seed;
} options;

typedef struct {
    options opt;
    char status_path[VI_BUF_PATH_MAX + 32], receipt_topic[64], client_id[64];
    struct mosquitto *mosq;
    mosquitto_property *connect_props;
    vi_buffer buf;
    vi_seq seq;
    vi_generator gen;
    vi_reader reader;
    FILE *input;
    int socket_up, fatal, receipts_subscribed;
    int64_t next_connect_ms, backoff_ms, offline_since_ms, next_produce_ms, drained_at_ms, last_status_ms;
    /* a message encoded but not yet buffered (the buffer was full) */
    int held, source_done;
    long held_len;
    uint64_t held_seq;
    int held_kind;
    size_t held_items;
    double held_sum;
    /* what this run created (the truth a test compares with the store) */
    unsigned long long created, samples, events, frames, first_seq, last_seq, recovered;
    double value_sum;
} app;

static vi_outbox g_out;        /* 256 KiB payload scratch inside: not on the stack */
static vi_message g_msg;       /* ~200 KiB */
static uint8_t g_enc[VI_MAX_PAYLOAD];
static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int64_t mono_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
    struct timespec t;
    t.tv_sec = ms / 1000, t.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&t, NULL);
}

static int fail(const char *what, const char *why) {
    fprintf(stderr, "vi_publisher: error: %s: %s\n", what, why);
    return EXIT_FAILURE;
}

/* --- options --- */

static const char USAGE[] =
    "usage: vi_publisher --vin VIN --state DIR [options]\n"
    "  --host H                 broker host (127.0.0.1)\n"
    "  --port P                 broker port (1883)\n"
    "  --client-id ID           MQTT client id (vi-<VIN>)\n"
    "  --tls-ca FILE            TLS: CA certificate of the broker (turns TLS on)\n"
    "  --tls-cert FILE          TLS: client certificate (its CN is the VIN with use_identity_as_username)\n"
    "  --tls-key FILE           TLS: client key\n"
    "  --username NAME          MQTT user name; the password comes from $VI_MQTT_PASSWORD\n"
    "  --messages N             new messages to create, then finish (default 10; 0: run until SIGTERM,\n"
    "                           generating in real time)\n"
    "  --input FILE|-           read S/E/C lines (see vi_source.h) instead of generating samples\n"
    "  --interval-ms MS         pause between new messages (0)\n"
    "  --samples N              generator: samples per signal per message (10)\n"
    "  --period-ms MS           generator: sample period (100)\n"
    "  --events-every N         generator: every N-th message is an events message (0: none)\n"
    "  --start-ms MS            generator: first timestamp (default: the drive ends now)\n"
    "  --seed N                 generator seed (1)\n"
    "  --receipt-timeout-ms MS  republish what no receipt covered after MS, doubling per attempt (60000; 0: off)\n"
    "  --max-backoff-ms MS      cap of that doubling (600000)\n"
    "  --window N               messages in flight (published, not PUBACKed) at most (20)\n"
    "  --wait-receipts-ms MS    when done, wait up to MS for receipts to cover everything (0: do not wait)\n"
    "  --connect-timeout-ms MS  give up when the broker is unreachable for MS (0: never)\n"
    "  --session-expiry-s S     MQTT session expiry interval (86400)\n"
    "  --keepalive S            MQTT keepalive (30)\n"
    "  --buffer-max-bytes N     on-disk buffer cap (67108864)\n"
    "  --status FILE            JSON status, rewritten when it changed (DIR/status.json; use a tmpfs on flash)\n"
    "  --status-interval-ms MS  at most that often (1000)\n";

typedef struct {
    const char *name;
    char type; /* s: string, l: long, L: long long, U: unsigned long long */
    size_t off;
    long long lo, hi;
} opt_spec;

#define O(field) offsetof(options, field)
static const opt_spec SPECS[] = {
    {"host", 's', O(host), 0, 0},
    {"port", 'l', O(port), 1, 65535},
    {"vin", 's', O(vin), 0, 0},
    {"state", 's', O(state), 0, 0},
    {"client-id", 's', O(client_id), 0, 0},
    {"input", 's', O(input), 0, 0},
    {"status", 's', O(status_path), 0, 0},
    {"status-interval-ms", 'l', O(status_interval_ms), 10, 3600000},
    {"tls-ca", 's', O(tls_ca), 0, 0},
    {"tls-cert", 's', O(tls_cert), 0, 0},
    {"tls-key", 's', O(tls_key), 0, 0},
    {"username", 's', O(username), 0, 0},
    {"messages", 'L', O(messages), 0, 1LL << 62},
    {"interval-ms", 'l', O(interval_ms), 0, 86400000},
    {"samples", 'l', O(samples), 1, VI_SRC_MAX_SAMPLES / 2},
    {"period-ms", 'l', O(period_ms), 1, 3600000},
    {"events-every", 'l', O(events_every), 0, 1000000},
    {"start-ms", 'L', O(start_ms), 0, (1LL << 48) - 1},
    {"seed", 'U', O(seed), 0, 0},
    {"receipt-timeout-ms", 'l', O(receipt_timeout_ms), 0, 86400000},
    {"max-backoff-ms", 'l', O(max_backoff_ms), 1, 604800000},
    {"window", 'l', O(window), 1, VI_OUTBOX_MAX_WINDOW},
    {"wait-receipts-ms", 'l', O(wait_receipts_ms), 0, 86400000},
    {"connect-timeout-ms", 'l', O(connect_timeout_ms), 0, 86400000},
    {"session-expiry-s", 'l', O(session_expiry_s), 1, 0xfffffffeL},
    {"keepalive", 'l', O(keepalive), 5, 65535},
    {"buffer-max-bytes", 'L', O(buffer_max_bytes), VI_BUF_MIN_BYTES, 1LL << 50},
};

static int set_option(options *o, const opt_spec *s, const char *value) {
    char *p = (char *)o + s->off, *end;
    long long v;
    if (s->type == 's') {
        *(const char **)(void *)p = value;
        return 0;
    }
    errno = 0;
    if (s->type == 'U') {
        if (value[0] == '-') return -1;
        *(unsigned long long *)(void *)p = strtoull(value, &end, 10);
        return errno || end == value || *end ? -1 : 0;
    }
    v = strtoll(value, &end, 10);
    if (errno || end == value || *end || v < s->lo || v > s->hi) return -1;
    if (s->type == 'l') *(long *)(void *)p = (long)v;
    else *(long long *)(void *)p = v;
    return 0;
}

static int usage_error(const char *what, const char *arg) {
    fprintf(stderr, "vi_publisher: error: %s: %s\n", what, arg);
    return -1;
}

static int parse_options(options *o, int argc, char **argv) {
    int i;
    size_t k;
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1", o->port = 1883, o->keepalive = 30, o->messages = 10, o->samples = 10;
    o->period_ms = 100, o->seed = 1, o->receipt_timeout_ms = 60000, o->max_backoff_ms = 600000;
    o->window = 20, o->session_expiry_s = 86400, o->buffer_max_bytes = 64LL << 20, o->start_ms = -1;
    o->status_interval_ms = 1000;
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq, *value;
        size_t name_len;
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) return fputs(USAGE, stdout), 1;
        if (strncmp(arg, "--", 2) != 0) return usage_error("unexpected argument", arg);
        eq = strchr(arg, '=');
        name_len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        for (k = 0; k < sizeof SPECS / sizeof SPECS[0]; k++) {
            if (strlen(SPECS[k].name) == name_len && !strncmp(SPECS[k].name, arg + 2, name_len)) break;
        }
        if (k == sizeof SPECS / sizeof SPECS[0]) return usage_error("unknown option", arg);
        value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!value || set_option(o, &SPECS[k], value)) {
            return fprintf(stderr, "vi_publisher: error: --%s: bad or missing value\n", SPECS[k].name), -1;
        }
    }
    if (!o->vin || !o->state) return usage_error("--vin and --state are required", "see --help");
    if (!vi_vin_valid(o->vin)) return fprintf(stderr, "vi_publisher: error: --vin: %s\n", vi_strerror(VI_ERR_VIN)), -1;
    return 0;
}

/* --- status and summary --- */

typedef struct {
    size_t due, inflight, waiting, refused;
} send_counts;

static send_counts counts(void) {
    send_counts c;
    size_t k[4];
    vi_outbox_counts(&g_out, k);
    c.due = k[VI_SEND_DUE], c.inflight = k[VI_SEND_INFLIGHT], c.waiting = k[VI_SEND_WAITING];
    c.refused = k[VI_SEND_REFUSED];
    return c;
}

static void write_json(app *a, FILE *f, const char *state) {
    const vi_outbox_stats *s = &g_out.stats;
    send_counts c = counts();
    fprintf(f,
            "{\"vin\": \"%s\", \"state\": \"%s\", \"boot\": %lu, \"connected\": %s, "
            "\"receipts_subscribed\": %s, \"created\": %llu, "
            "\"samples\": %llu, \"events\": %llu, \"frames\": %llu, \"value_sum\": %.17g, \"first_seq\": %llu, "
            "\"last_seq\": %llu, \"recovered\": %llu, \"pending\": %lu, \"due\": %lu, \"inflight\": %lu, "
            "\"awaiting_receipt\": %lu, \"refused_by_broker\": %lu, \"published\": %llu, \"republished\": %llu, "
            "\"acked\": %llu, "
            "\"ack_errors\": %llu, \"receipts\": %llu, \"receipts_ignored\": %llu, \"receipted_stored\": %llu, "
            "\"receipted_rejected\": %llu, \"damaged\": %llu, \"buffer_bytes\": %llu, \"compactions\": %llu}\n",
            a->opt.vin, state, (unsigned long)a->seq.boot, g_out.connected ? "true" : "false",
            a->receipts_subscribed ? "true" : "false", a->created,
            a->samples, a->events, a->frames, a->value_sum, a->first_seq, a->last_seq, a->recovered,
            (unsigned long)a->buf.pending, (unsigned long)c.due, (unsigned long)c.inflight, (unsigned long)c.waiting,
            (unsigned long)c.refused,
            (unsigned long long)s->published, (unsigned long long)s->republished, (unsigned long long)s->acked,
            (unsigned long long)s->ack_errors, (unsigned long long)s->receipts,
            (unsigned long long)s->receipts_ignored, (unsigned long long)s->stored, (unsigned long long)s->rejected,
            (unsigned long long)s->damaged, (unsigned long long)a->buf.size, (unsigned long long)a->buf.compactions);
}

/* status.json: replaced atomically (temp + rename) when its content changed; not fsynced, it is a
 * report, not state. On flash, point --status at a tmpfs (e.g. /run). */
static void write_status(app *a, const char *state) {
    static char last[2048], text[2048];
    char tmp[sizeof a->status_path + 8];
    FILE *f = tmpfile(), *out;
    size_t n;
    if (!f) return;
    write_json(a, f, state);
    rewind(f);
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    if (!strcmp(text, last)) return;
    snprintf(tmp, sizeof tmp, "%s.tmp", a->status_path);
    out = fopen(tmp, "w");
    if (!out) return;
    fputs(text, out);
    if (fclose(out) == 0 && rename(tmp, a->status_path) == 0) memcpy(last, text, n + 1);
}

/* --- MQTT --- */

static void lost(app *a, const char *why) {
    if (a->socket_up || g_out.connected) fprintf(stderr, "vi_publisher: disconnected: %s\n", why);
    a->socket_up = 0;
    vi_outbox_disconnected(&g_out);
    if (!a->offline_since_ms) a->offline_since_ms = mono_ms();
    a->next_connect_ms = mono_ms() + a->backoff_ms;
    a->backoff_ms = a->backoff_ms * 2 > 30000 ? 30000 : a->backoff_ms * 2;
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags, const mosquitto_property *props) {
    app *a = obj;
    (void)props;
    if (rc != 0) {
        fprintf(stderr, "vi_publisher: broker refused the connection: %s\n", mosquitto_reason_string(rc));
        mosquitto_disconnect(m);
        lost(a, "connection refused");
        return;
    }
    /* Subscribe before anything is published on this connection: the broker handles packets in order,
     * so no receipt for these messages can be sent before the subscription exists. */
    mosquitto_subscribe_v5(m, NULL, a->receipt_topic, 1, 0, NULL);
    fprintf(stderr, "vi_publisher: connected to %s:%ld (session %s); %lu messages to send\n", a->opt.host,
            a->opt.port, flags & 1 ? "resumed" : "new", (unsigned long)a->buf.pending);
    a->backoff_ms = 1000;
    a->offline_since_ms = 0;
    vi_outbox_connected(&g_out);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted,
                         const mosquitto_property *props) {
    app *a = obj;
    (void)m, (void)mid, (void)props;
    if (n == 1 && granted[0] <= 2) {
        a->receipts_subscribed = 1;
        return;
    }
    a->receipts_subscribed = 0;
    fprintf(stderr,
            "vi_publisher: the broker refused the subscription to %s (reason 0x%02x: %s): no receipt can arrive, "
            "so everything stays buffered and is republished (check the broker's ACL)\n",
            a->receipt_topic, n == 1 ? (unsigned)granted[0] : 0u, n == 1 ? mosquitto_reason_string(granted[0]) : "?");
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props) {
    (void)m, (void)props;
    lost(obj, rc ? mosquitto_reason_string(rc) : "closed");
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason, const mosquitto_property *props) {
    (void)m, (void)obj, (void)props;
    vi_outbox_puback(&g_out, mid, reason);
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props) {
    app *a = obj;
    int rc;
    (void)m, (void)props;
    if (strcmp(msg->topic, a->receipt_topic) != 0) return;
    rc = vi_outbox_receipt(&g_out, msg->payload, msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0);
    if (rc < 0) {
        fprintf(stderr, "vi_publisher: error: recording a receipt: %s: %s\n", vi_buffer_strerror(rc), strerror(errno));
        a->fatal = 1;
    }
}

static int publish(void *ctx, const char *topic, const uint8_t *payload, size_t len, int *mid) {
    app *a = ctx;
    int rc;
    if (!a->socket_up) return -1;
    rc = mosquitto_publish_v5(a->mosq, mid, topic, (int)len, payload, 1, false, NULL);
    if (rc == MOSQ_ERR_SUCCESS) return 0;
    /* refusals of this message (over the broker's maximum packet size...) versus "not now" */
    return rc == MOSQ_ERR_OVERSIZE_PACKET || rc == MOSQ_ERR_PAYLOAD_SIZE || rc == MOSQ_ERR_QOS_NOT_SUPPORTED ? rc : -1;
}

static void try_connect(app *a) {
    int rc = mosquitto_connect_bind_v5(a->mosq, a->opt.host, (int)a->opt.port, (int)a->opt.keepalive, NULL,
                                       a->connect_props);
    /* Always a full connect: mosquitto_reconnect() would send no CONNECT properties, i.e. a session
     * expiry of 0, and the broker would drop the session (and queued receipts) at the next disconnect. */
    if (rc == MOSQ_ERR_SUCCESS) {
        a->socket_up = 1;
        return;
    }
    if (!a->offline_since_ms) a->offline_since_ms = mono_ms();
    if (a->backoff_ms == 1000) fprintf(stderr, "vi_publisher: cannot connect to %s:%ld: %s (retrying)\n",
                                       a->opt.host, a->opt.port, mosquitto_strerror(rc));
    a->next_connect_ms = mono_ms() + a->backoff_ms;
    a->backoff_ms = a->backoff_ms * 2 > 30000 ? 30000 : a->backoff_ms * 2;
}

static int mqtt_setup(app *a) {
    mosquitto_lib_init();
    a->mosq = mosquitto_new(a->client_id, false, a); /* clean_start = 0 */
    if (!a->mosq) return fail("mosquitto_new", strerror(errno));
    mosquitto_int_option(a->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    if (mosquitto_property_add_int32(&a->connect_props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                     (uint32_t)a->opt.session_expiry_s) != MOSQ_ERR_SUCCESS) {
        return fail("mosquitto properties", "out of memory");
    }
    mosquitto_connect_v5_callback_set(a->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(a->mosq, on_disconnect);
    mosquitto_subscribe_v5_callback_set(a->mosq, on_subscribe);
    if (a->opt.tls_ca) {
        int rc = mosquitto_tls_set(a->mosq, a->opt.tls_ca, NULL, a->opt.tls_cert, a->opt.tls_key, NULL);
        if (rc != MOSQ_ERR_SUCCESS) return fail("TLS settings", mosquitto_strerror(rc));
    }
    if (a->opt.username && mosquitto_username_pw_set(a->mosq, a->opt.username, getenv("VI_MQTT_PASSWORD"))) {
        return fail("--username", "refused by libmosquitto");
    }
    mosquitto_publish_v5_callback_set(a->mosq, on_publish);
    mosquitto_message_v5_callback_set(a->mosq, on_message);
    a->backoff_ms = 1000;
    return 0;
}

/* --- producing messages --- */

/* Encodes the next message from the source into g_enc; 1: one is held, 0: source done, -1: error. */
static int next_message(app *a) {
    char err[160];
    int rc;
    if (a->input) {
        rc = vi_reader_next(&a->reader, &g_msg, err, sizeof err);
        if (rc < 0) return fail("input", err), -1;
        if (rc == 0) return 0;
    } else {
        vi_generator_next(&a->gen, &g_msg);
    }
    if ((rc = vi_seq_next(&a->seq, &a->held_seq)) != 0) return fail("seq", vi_seq_strerror(rc)), -1;
    a->held_len = vi_message_encode(&g_msg, a->opt.vin, a->held_seq, g_enc, sizeof g_enc);
    if (a->held_len < 0) {
        snprintf(err, sizeof err, "message from input line %lu", a->reader.first);
        return fail(a->input ? err : "generated message", vi_strerror(a->held_len)), -1;
    }
    a->held_kind = g_msg.kind, a->held_items = g_msg.items, a->held_sum = g_msg.value_sum;
    a->held = 1;
    return 1;
}

/* Makes the held message durable; 1 done, 0 buffer full (kept for later), -1 error. */
static int buffer_held(app *a) {
    static int full_reported;
    int rc = vi_buffer_append(&a->buf, a->held_seq, a->held_kind, g_enc, (size_t)a->held_len);
    if (rc == VI_BUF_ERR_FULL) {
        if (!full_reported) fprintf(stderr, "vi_publisher: buffer full (%lu messages unreceipted): new data waits\n",
                                    (unsigned long)a->buf.pending);
        full_reported = 1;
        return 0;
    }
    if (rc) return fail("buffer append", vi_buffer_strerror(rc)), -1;
    full_reported = 0;
    a->held = 0;
    if (!a->created) a->first_seq = a->held_seq;
    a->last_seq = a->held_seq;
    a->created++;
    if (a->held_kind == VI_KIND_SIGNALS) a->samples += a->held_items, a->value_sum += a->held_sum;
    if (a->held_kind == VI_KIND_EVENTS) a->events += a->held_items;
    if (a->held_kind == VI_KIND_CAN) a->frames += a->held_items;
    return 1;
}

static int produce(app *a, int64_t now) {
    int made = 0, rc;
    while (!a->source_done && made < 8 && now >= a->next_produce_ms) {
        if (!a->held) {
            if (a->opt.messages && !a->input && a->created >= (unsigned long long)a->opt.messages) {
                a->source_done = 1;
                break;
            }
            int64_t span = (int64_t)a->opt.samples * a->opt.period_ms;
            if (!a->input && !a->opt.messages && a->gen.next_ts + span > wall_ms()) {
                break; /* continuous: a message once its samples have happened, never ahead of the clock */
            }
            rc = next_message(a);
            if (rc < 0) return -1;
            if (rc == 0) {
                a->source_done = 1;
                break;
            }
        }
        rc = buffer_held(a);
        if (rc <= 0) return rc;
        made++;
        a->next_produce_ms = now + a->opt.interval_ms;
    }
    return 0;
}

/* --- main loop --- */

static int finished(app *a, int64_t now) {
    static int64_t last_check;
    send_counts c;
    if (!a->source_done || a->held || now - last_check < 50) return 0; /* a pass over the buffer: not too often */
    last_check = now;
    c = counts();
    if (c.due || c.inflight || c.refused || !g_out.connected) return 0; /* everything PUBACKed at least once */
    if (!a->opt.wait_receipts_ms || a->buf.pending == 0) return 1;
    if (!a->drained_at_ms) a->drained_at_ms = now;
    return now - a->drained_at_ms >= a->opt.wait_receipts_ms ? EXIT_GAVE_UP : 0;
}

static int run(app *a) {
    int rc;
    while (!g_stop && !a->fatal) {
        int64_t now = mono_ms();
        if (!a->socket_up && now >= a->next_connect_ms) try_connect(a);
        if (produce(a, now) < 0) return EXIT_FAILURE;
        if ((rc = vi_outbox_pump(&g_out, now)) != 0) return fail("buffer read", vi_buffer_strerror(rc));
        if (a->socket_up) {
            rc = mosquitto_loop(a->mosq, 20, 1);
            if (rc != MOSQ_ERR_SUCCESS && a->socket_up) lost(a, mosquitto_strerror(rc));
        } else {
            sleep_ms(20);
        }
        if (now - a->last_status_ms >= a->opt.status_interval_ms) write_status(a, "running"), a->last_status_ms = now;
        if ((rc = finished(a, now)) != 0) return rc == 1 ? EXIT_SUCCESS : rc;
        if (a->opt.connect_timeout_ms && a->offline_since_ms && now - a->offline_since_ms > a->opt.connect_timeout_ms) {
            fprintf(stderr, "vi_publisher: gave up: broker unreachable for %ld ms\n", a->opt.connect_timeout_ms);
            return EXIT_GAVE_UP;
        }
    }
    return a->fatal ? EXIT_FAILURE : EXIT_SUCCESS;
}

static int open_state(app *a) {
    const vi_buffer_recovery *r = &a->buf.recovery;
    int rc;
    if (mkdir(a->opt.state, 0700) != 0 && errno != EEXIST) return fail(a->opt.state, strerror(errno));
    rc = vi_buffer_open(&a->buf, a->opt.state, (uint64_t)a->opt.buffer_max_bytes);
    if (rc) return fail("opening the buffer", rc == VI_BUF_ERR_IO ? strerror(errno) : vi_buffer_strerror(rc));
    if (r->torn_bytes) fprintf(stderr, "vi_publisher: buffer: cut a torn last record (%llu bytes)\n",
                               (unsigned long long)r->torn_bytes);
    if (r->corrupt_regions) fprintf(stderr, "vi_publisher: buffer: skipped %llu damaged bytes in %llu places\n",
                                    (unsigned long long)r->skipped_bytes, (unsigned long long)r->corrupt_regions);
    rc = vi_seq_open(&a->seq, a->opt.state, a->buf.high_seq, a->buf.has_high);
    if (rc) return fail("boot counter", rc == VI_SEQ_ERR_IO ? strerror(errno) : vi_seq_strerror(rc));
    a->recovered = a->buf.pending;
    fprintf(stderr, "vi_publisher: VIN %s boot %lu; %llu messages from earlier runs await receipts\n", a->opt.vin,
            (unsigned long)a->seq.boot, a->recovered);
    return 0;
}

static int open_source(app *a) {
    if (a->opt.input) {
        a->input = strcmp(a->opt.input, "-") ? fopen(a->opt.input, "r") : stdin;
        if (!a->input) return fail(a->opt.input, strerror(errno));
        vi_reader_init(&a->reader, a->input);
    } else {
        int64_t span = (int64_t)a->opt.samples * a->opt.period_ms;
        /* a finite run: the drive ends now; a continuous one: the first message covers the last `span` ms */
        int64_t runs = a->opt.messages ? (int64_t)a->opt.messages : 1;
        int64_t start = a->opt.start_ms >= 0 ? a->opt.start_ms : wall_ms() - runs * span;
        vi_generator_init(&a->gen, a->opt.seed, start, (unsigned)a->opt.samples, (unsigned)a->opt.period_ms,
                          (unsigned)a->opt.events_every);
    }
    return 0;
}

static void setup_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

int main(int argc, char **argv) {
    static app a;
    int rc = parse_options(&a.opt, argc, argv);
    if (rc) return rc > 0 ? EXIT_SUCCESS : EXIT_USAGE;
    snprintf(a.receipt_topic, sizeof a.receipt_topic, "vi/v1/%s/receipt", a.opt.vin);
    snprintf(a.client_id, sizeof a.client_id, "%s", a.opt.client_id ? a.opt.client_id : "");
    if (!a.opt.client_id) snprintf(a.client_id, sizeof a.client_id, "vi-%s", a.opt.vin);
    if (snprintf(a.status_path, sizeof a.status_path, "%s", a.opt.status_path ? a.opt.status_path : "") < 0 ||
        (!a.opt.status_path && snprintf(a.status_path, sizeof a.status_path, "%s/status.json", a.opt.state) >=
                                   (int)sizeof a.status_path)) {
        return fail("--state", "path too long");
    }
    setup_signals();
    if (open_state(&a) || open_source(&a)) return EXIT_FAILURE;
    vi_outbox_init(&g_out, &a.buf, a.opt.vin, publish, &a);
    g_out.log = stderr;
    g_out.receipt_timeout_ms = a.opt.receipt_timeout_ms;
    g_out.max_backoff_ms = a.opt.max_backoff_ms;
    g_out.window = (unsigned)a.opt.window;
    if (mqtt_setup(&a)) return EXIT_FAILURE;
    rc = run(&a);
    if (a.socket_up) {
        mosquitto_disconnect(a.mosq);
        mosquitto_loop(a.mosq, 100, 1);
    }
    write_status(&a, rc == EXIT_SUCCESS ? "done" : rc == EXIT_GAVE_UP ? "gave_up" : "failed");
    write_json(&a, stdout,
               g_stop ? "stopped" : rc == EXIT_SUCCESS ? "done" : rc == EXIT_GAVE_UP ? "gave_up" : "failed");
    fflush(stdout);
    vi_buffer_close(&a.buf);
    if (a.input && a.input != stdin) fclose(a.input);
    mosquitto_property_free_all(&a.connect_props);
    mosquitto_destroy(a.mosq);
    mosquitto_lib_cleanup();
    return rc;
}
