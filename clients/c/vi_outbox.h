/* vi_outbox.h: what to publish when, over a vi_buffer, independent of the MQTT library.
 *
 * Every message in the buffer is in one of four states (vi_buffer_entry.state):
 *   DUE       to be published (new, recovered after a restart, or timed out)
 *   INFLIGHT  handed to the MQTT client, waiting for the broker's PUBACK
 *   WAITING   PUBACKed, waiting for a receipt from the gateway
 *   REFUSED   the broker answered with a failure reason code (MQTT 5, e.g. 0x87 not
 *             authorized, 0x97 quota exceeded): published again after the timeout
 * A receipt that covers a message (stored or rejected) removes it from the
 * buffer, whatever its state. After a (re)connect every message not covered is
 * DUE again; while connected, a message not covered within its receipt timeout
 * is DUE again, the timeout doubling with every attempt up to max_backoff_ms.
 * At most `window` messages are INFLIGHT at a time, oldest seq first.
 *
 * The caller supplies publish() and feeds in connection changes, PUBACKs and
 * receipts; a vi_outbox does no I/O other than through vi_buffer and `log`.
 * New messages are appended to the buffer by the caller with seqs above all
 * earlier ones; vi_outbox_pump() costs O(log n + window) when nothing timed out,
 * so a large backlog (a month offline) costs nothing while it waits.
 */
#ifndef VI_OUTBOX_H
#define VI_OUTBOX_H

#include <stdint.h>
#include <stdio.h>

#include "vi_buffer.h"
#include "vi_encode.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VI_OUTBOX_MAX_WINDOW 256

enum { VI_SEND_DUE = 0, VI_SEND_INFLIGHT = 1, VI_SEND_WAITING = 2, VI_SEND_REFUSED = 3 };

/* Publishes one QoS 1 message: 0 and *mid set when the MQTT client took it; < 0 when it cannot take
 * anything now (not connected: stop for now); > 0 when it refuses this message (e.g. larger than the
 * broker's maximum packet size: it goes to REFUSED and is tried again after the timeout). */
typedef int (*vi_publish_fn)(void *ctx, const char *topic, const uint8_t *payload, size_t len, int *mid);

typedef struct {
    uint64_t published;        /* first publishes of a message by this process */
    uint64_t republished;      /* further publishes: reconnects, receipt timeouts */
    uint64_t acked;            /* successful PUBACKs */
    uint64_t ack_errors;       /* PUBACKs with a failure reason code (REFUSED, retried after the timeout) */
    uint64_t receipts;         /* receipts applied */
    uint64_t receipts_ignored; /* receipts refused (malformed, other VIN, unknown version): logged */
    uint64_t stored;           /* messages a receipt reported stored (dropped from the buffer) */
    uint64_t rejected;         /* messages a receipt reported rejected (dropped, reason logged) */
    uint64_t damaged;          /* buffered copies that failed their CRC (dropped, logged) */
} vi_outbox_stats;

typedef struct {
    vi_buffer *buf;
    char vin[VI_VIN_LEN + 1];
    vi_publish_fn publish;
    void *ctx;
    FILE *log;                  /* one line per notable event; NULL: silent */
    int64_t receipt_timeout_ms; /* 0: republish only after a reconnect */
    int64_t max_backoff_ms;
    unsigned window;
    int connected;
    struct {
        int mid;
        uint64_t seq;
    } slots[VI_OUTBOX_MAX_WINDOW];
    unsigned n_slots;
    uint64_t due_from;       /* no DUE message has a seq below this: the pump starts there */
    int64_t next_timeout_ms; /* earliest receipt timeout among published messages */
    vi_outbox_stats stats;
    uint8_t payload[VI_MAX_PAYLOAD];
} vi_outbox;

void vi_outbox_init(vi_outbox *o, vi_buffer *b, const char *vin, vi_publish_fn publish, void *ctx);
void vi_outbox_connected(vi_outbox *o);
void vi_outbox_disconnected(vi_outbox *o);
/* Moves timed-out messages to DUE and publishes DUE ones within the window. Returns 0 or a VI_BUF_ERR_*. */
int vi_outbox_pump(vi_outbox *o, int64_t now_ms);
void vi_outbox_puback(vi_outbox *o, int mid, int reason_code);
#define VI_OUTBOX_IGNORED 1
/* Applies a receipt: 0; VI_OUTBOX_IGNORED when it was refused (malformed, other VIN; logged, nothing changed);
 * a VI_BUF_ERR_* when writing the covered records failed (the messages stay covered in RAM only:
 * after a restart they are sent again, which is harmless). */
int vi_outbox_receipt(vi_outbox *o, const uint8_t *payload, size_t len);
/* Messages held in state `state`. One pass over the buffer. */
size_t vi_outbox_count(const vi_outbox *o, int state);
/* counts[VI_SEND_DUE .. VI_SEND_REFUSED] in one pass. */
void vi_outbox_counts(const vi_outbox *o, size_t counts[4]);

#ifdef __cplusplus
}
#endif

#endif /* VI_OUTBOX_H */
