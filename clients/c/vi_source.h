/* vi_source.h: where the example publisher's messages come from.
 *
 * Either a generator (a drive: Vehicle.Speed and Vehicle.TraveledDistance
 * samples, and app events every few messages), or text lines, one item each:
 *
 *   S,<ts_ms>,<signal_id>,<scale_exp>,<raw>          a signal sample
 *   E,<ts_ms>,<event_id>,<value>,<text>              an event (text: the rest of the line, UTF-8)
 *   C,<ts_ms>,<bus>,<id>,<extended 0|1>,<fd 0|1>,<data as hex>   a CAN frame
 *   # ...                                            a comment
 *
 * Consecutive items of one kind form one message; a blank line, a change of
 * kind or a full message (see the limits below) starts the next. Samples of a
 * message are grouped into blocks by (signal_id, scale_exp), in order of
 * first appearance.
 */
#ifndef VI_SOURCE_H
#define VI_SOURCE_H

#include <stdint.h>
#include <stdio.h>

#include "vi_encode.h"

#define VI_SRC_MAX_SAMPLES 4096
#define VI_SRC_MAX_BLOCKS 32
#define VI_SRC_MAX_EVENTS 256
#define VI_SRC_MAX_FRAMES 512
#define VI_SRC_LINE_MAX 1024

typedef struct {
    int kind; /* VI_KIND_*; 0 when empty */
    uint64_t base_ts;
    size_t n_blocks, n_events, n_frames;
    vi_signal_block blocks[VI_SRC_MAX_BLOCKS];
    int64_t ts[VI_SRC_MAX_SAMPLES], raw[VI_SRC_MAX_SAMPLES]; /* the blocks' samples, block after block */
    vi_event events[VI_SRC_MAX_EVENTS];
    char texts[VI_SRC_MAX_EVENTS][VI_MAX_TEXT + 1];
    vi_can_frame frames[VI_SRC_MAX_FRAMES];
    uint8_t data[VI_SRC_MAX_FRAMES][64];
    size_t items;     /* samples, events or frames carried */
    double value_sum; /* sum of the sample values, computed as the gateway does */
} vi_message;

/* Encodes m; returns the payload length or a negative VI_ERR_*. */
long vi_message_encode(const vi_message *m, const char *vin, uint64_t seq, uint8_t *out, size_t cap);

typedef struct {
    uint64_t rng;
    int64_t next_ts;
    int32_t speed; /* 0.1 km/h */
    int64_t odo_mm;
    unsigned samples, period_ms, events_every;
    uint64_t index;
} vi_generator;

/* samples per signal per message (1..2048), period_ms between samples, an events message every
 * events_every messages (0: never). The drive starts at start_ms. */
void vi_generator_init(vi_generator *g, uint64_t seed, int64_t start_ms, unsigned samples, unsigned period_ms,
                       unsigned events_every);
void vi_generator_next(vi_generator *g, vi_message *m);

typedef struct {
    FILE *f;
    unsigned long line;   /* number of the last line read */
    unsigned long first;  /* line of the current message's first item */
    char held[VI_SRC_LINE_MAX + 2]; /* a line read but belonging to the next message */
    int has_held, eof;
    /* signals being collected, before they are grouped into blocks */
    size_t n;
    uint8_t block_of[VI_SRC_MAX_SAMPLES];
    int64_t s_ts[VI_SRC_MAX_SAMPLES], s_raw[VI_SRC_MAX_SAMPLES];
} vi_reader;

void vi_reader_init(vi_reader *r, FILE *f);
/* 1: a message in *m; 0: end of input; -1: a bad line (err says which and why). */
int vi_reader_next(vi_reader *r, vi_message *m, char *err, size_t errlen);

#endif /* VI_SOURCE_H */
