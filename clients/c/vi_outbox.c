/* vi_outbox.c: send, resend and receipt bookkeeping over a vi_buffer. See vi_outbox.h. */
#include "vi_outbox.h"

#include <string.h>

#include "vi_receipt.h"

static const char *const STREAM[4] = {"", "signals", "events", "can"};

void vi_outbox_init(vi_outbox *o, vi_buffer *b, const char *vin, vi_publish_fn publish, void *ctx) {
    memset(o, 0, sizeof *o);
    o->buf = b;
    memcpy(o->vin, vin, VI_VIN_LEN);
    o->vin[VI_VIN_LEN] = '\0';
    o->publish = publish;
    o->ctx = ctx;
    o->receipt_timeout_ms = 60000;
    o->max_backoff_ms = 600000;
    o->window = 20;
    o->next_timeout_ms = INT64_MAX;
}

static vi_buffer_entry *find(const vi_outbox *o, uint64_t seq) {
    size_t i = vi_buffer_lower_bound(o->buf, seq);
    vi_buffer_entry *e = i < o->buf->n ? &o->buf->entries[i] : NULL;
    return e && e->seq == seq && !e->covered ? e : NULL;
}

static void drop_slot(vi_outbox *o, unsigned i) {
    o->slots[i] = o->slots[--o->n_slots];
}

static void drop_slot_of(vi_outbox *o, uint64_t seq) {
    unsigned i;
    for (i = 0; i < o->n_slots; i++) {
        if (o->slots[i].seq == seq) {
            drop_slot(o, i);
            return;
        }
    }
}

/* Everything not covered is sent again after a (re)connect: a PUBACK only meant "in the broker's memory". */
void vi_outbox_connected(vi_outbox *o) {
    size_t i;
    o->connected = 1;
    o->n_slots = 0;
    o->due_from = 0;
    o->next_timeout_ms = INT64_MAX;
    for (i = 0; i < o->buf->n; i++) o->buf->entries[i].state = VI_SEND_DUE;
}

void vi_outbox_disconnected(vi_outbox *o) {
    o->connected = 0;
    o->n_slots = 0;
}

/* The wait for a receipt after the n-th attempt: timeout, 2 x timeout, 4 x ... up to max_backoff_ms. */
static int64_t wait_after(const vi_outbox *o, uint32_t attempts) {
    int64_t t = o->receipt_timeout_ms;
    uint32_t k;
    for (k = 1; k < attempts && t < o->max_backoff_ms; k++) t *= 2;
    return t < o->max_backoff_ms ? t : o->max_backoff_ms;
}

static void note_timeout(vi_outbox *o, int64_t due) {
    if (due < o->next_timeout_ms) o->next_timeout_ms = due;
}

/* A full pass only when the earliest timeout has come. */
static void timeouts(vi_outbox *o, int64_t now) {
    int64_t next = INT64_MAX;
    size_t i;
    if (o->receipt_timeout_ms <= 0 || now < o->next_timeout_ms) return;
    for (i = 0; i < o->buf->n; i++) {
        vi_buffer_entry *e = &o->buf->entries[i];
        if (e->covered || e->state == VI_SEND_DUE) continue;
        if (now < e->due_ms) {
            next = e->due_ms < next ? e->due_ms : next;
            continue;
        }
        if (e->state == VI_SEND_INFLIGHT) drop_slot_of(o, e->seq);
        e->state = VI_SEND_DUE;
        if (e->seq < o->due_from) o->due_from = e->seq;
    }
    o->next_timeout_ms = next;
}

/* 1: published; 0: the client refused (stop for now); < 0: buffer error. */
static int send_one(vi_outbox *o, vi_buffer_entry *e, int64_t now) {
    char topic[64];
    long len = vi_buffer_read(o->buf, e, o->payload, sizeof o->payload);
    int mid = 0, rc;
    size_t dropped;
    if (len == VI_BUF_ERR_CORRUPT) { /* cannot be sent as it was: say so loudly, never send other bytes */
        if (o->log) fprintf(o->log, "vi_publisher: seq %llu: buffered copy fails its CRC: dropped\n",
                            (unsigned long long)e->seq);
        o->stats.damaged++;
        return vi_buffer_cover(o->buf, e->seq, e->seq, 1, &dropped) ? -1 : 1;
    }
    if (len < 0) return (int)len;
    snprintf(topic, sizeof topic, "vi/v1/%s/%s", o->vin, STREAM[e->kind <= 3 ? e->kind : 0]);
    rc = o->publish(o->ctx, topic, o->payload, (size_t)len, &mid);
    if (rc < 0) return 0;
    if (rc > 0) { /* this message only: the others go on */
        if (o->log && !e->attempts) fprintf(o->log, "vi_publisher: seq %llu: the MQTT client refused it (%d)\n",
                                            (unsigned long long)e->seq, rc);
        e->attempts++;
        e->state = VI_SEND_REFUSED;
        e->due_ms = now + wait_after(o, e->attempts);
        note_timeout(o, e->due_ms);
        o->stats.ack_errors++;
        return 1;
    }
    if (e->attempts) o->stats.republished++;
    else o->stats.published++;
    e->attempts++;
    e->state = VI_SEND_INFLIGHT;
    e->mid = mid;
    e->due_ms = now + wait_after(o, e->attempts);
    note_timeout(o, e->due_ms);
    o->slots[o->n_slots].mid = mid;
    o->slots[o->n_slots].seq = e->seq;
    o->n_slots++;
    return 1;
}

int vi_outbox_pump(vi_outbox *o, int64_t now) {
    unsigned window = o->window < VI_OUTBOX_MAX_WINDOW ? o->window : VI_OUTBOX_MAX_WINDOW;
    size_t i;
    if (!o->connected) return 0;
    timeouts(o, now);
    for (i = vi_buffer_lower_bound(o->buf, o->due_from); i < o->buf->n; i++) {
        vi_buffer_entry *e = &o->buf->entries[i];
        int rc;
        if (e->covered || e->state != VI_SEND_DUE) continue;
        if (o->n_slots >= window) break;
        rc = send_one(o, e, now);
        if (rc < 0) return rc;
        if (rc == 0) break;
    }
    /* everything below entries[i] is sent or waiting; new appends come above it */
    o->due_from = i < o->buf->n ? o->buf->entries[i].seq : o->buf->n ? o->buf->entries[o->buf->n - 1].seq + 1 : 0;
    return 0;
}

void vi_outbox_puback(vi_outbox *o, int mid, int reason_code) {
    unsigned i;
    for (i = 0; i < o->n_slots; i++) {
        vi_buffer_entry *e;
        if (o->slots[i].mid != mid) continue;
        e = find(o, o->slots[i].seq);
        drop_slot(o, i);
        if (!e || e->state != VI_SEND_INFLIGHT) return;
        e->state = VI_SEND_WAITING; /* the receipt timeout set at publish still runs */
        if (reason_code >= 0x80) {  /* MQTT 5 failure (not authorized, quota...): retry after the timeout */
            e->state = VI_SEND_REFUSED;
            o->stats.ack_errors++;
            if (o->log) fprintf(o->log, "vi_publisher: seq %llu: broker refused the publish (reason 0x%02x)\n",
                                (unsigned long long)e->seq, (unsigned)reason_code);
        } else {
            o->stats.acked++;
        }
        return;
    }
}

/* A reason as one printable ASCII line: anything else becomes \xNN, and it is cut at 200 bytes. */
static void log_reason(FILE *log, uint64_t seq, const char *reason, size_t len) {
    size_t i;
    fprintf(log, "vi_publisher: seq %llu rejected by the gateway: ", (unsigned long long)seq);
    for (i = 0; i < len && i < 200; i++) {
        unsigned char c = (unsigned char)reason[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') fputc(c, log);
        else fprintf(log, "\\x%02x", c);
    }
    fputs(len > 200 ? "...\n" : "\n", log);
}

static int apply(vi_outbox *o, vi_receipt *r) {
    uint64_t first, last, seq;
    const char *reason;
    size_t len, k;
    int rc = 0;
    while (!rc && vi_receipt_next_stored(r, &first, &last)) {
        rc = vi_buffer_cover(o->buf, first, last, 0, &k);
        o->stats.stored += k;
    }
    while (!rc && vi_receipt_next_rejected(r, &seq, &reason, &len)) {
        rc = vi_buffer_cover(o->buf, seq, seq, 1, &k);
        o->stats.rejected += k;
        if (k && o->log) log_reason(o->log, seq, reason, len);
    }
    return rc;
}

int vi_outbox_receipt(vi_outbox *o, const uint8_t *payload, size_t len) {
    vi_receipt r;
    size_t at = 0;
    unsigned i;
    int rc = vi_receipt_parse(payload, len, &r, &at);
    if (rc == 0 && memcmp(r.vin, o->vin, VI_VIN_LEN) != 0) {
        if (o->log) fprintf(o->log, "vi_publisher: ignored a receipt for another VIN\n");
        o->stats.receipts_ignored++;
        return VI_OUTBOX_IGNORED;
    }
    if (rc) {
        if (o->log) fprintf(o->log, "vi_publisher: ignored a receipt (%lu bytes): %s at offset %lu\n",
                            (unsigned long)len, vi_receipt_strerror(rc), (unsigned long)at);
        o->stats.receipts_ignored++;
        return VI_OUTBOX_IGNORED;
    }
    o->stats.receipts++;
    rc = apply(o, &r);
    if (!rc) rc = vi_buffer_commit(o->buf);
    for (i = 0; i < o->n_slots;) { /* covered while in flight: its PUBACK no longer matters */
        if (find(o, o->slots[i].seq)) i++;
        else drop_slot(o, i);
    }
    return rc;
}

void vi_outbox_counts(const vi_outbox *o, size_t counts[4]) {
    size_t i;
    counts[0] = counts[1] = counts[2] = counts[3] = 0;
    for (i = 0; i < o->buf->n; i++) {
        const vi_buffer_entry *e = &o->buf->entries[i];
        if (!e->covered && e->state <= VI_SEND_REFUSED) counts[e->state]++;
    }
}

size_t vi_outbox_count(const vi_outbox *o, int state) {
    size_t counts[4];
    vi_outbox_counts(o, counts);
    return state >= 0 && state <= VI_SEND_REFUSED ? counts[state] : 0;
}
