/* vi_encode.h: encoder for vehicle-ingest wire format v1 (schemas/WIRE_FORMAT.md).
 *
 * C99, libc only, no allocation: every function writes into a buffer the
 * caller owns and returns the payload length (> 0) or a negative VI_ERR_*.
 * Output is byte for byte what the project's Python encoder writes (the
 * shortest msgpack form of every element), checked by clients/c/tests/parity.py.
 */
#ifndef VI_ENCODE_H
#define VI_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VI_FORMAT_VERSION 1
#define VI_KIND_SIGNALS 1
#define VI_KIND_EVENTS 2
#define VI_KIND_CAN 3

#define VI_VIN_LEN 17
#define VI_MAX_PAYLOAD 262144          /* bytes; the gateway rejects longer payloads unread */
#define VI_TS_LIMIT ((int64_t)1 << 48) /* every timestamp is in [0, 2^48) ms */
#define VI_RAW_LIMIT ((int64_t)1 << 53) /* |raw value| < 2^53 */
#define VI_SCALE_EXP_MAX 12            /* scale_exp in [-12, 12] */
#define VI_MAX_COUNT 65535             /* samples per block, events / frames per message */
#define VI_MAX_TEXT 255                /* bytes of UTF-8 per event text */
#define VI_CAN_STD_LIMIT ((uint32_t)1 << 11)
#define VI_CAN_EXT_LIMIT ((uint32_t)1 << 29)

/* Errors (negative return values). vi_strerror() names them. */
#define VI_ERR_ARG (-1)       /* a NULL pointer where data is required */
#define VI_ERR_BUFFER (-2)    /* the output buffer is too small (the payload itself is within the cap) */
#define VI_ERR_TOO_LARGE (-3) /* the payload would exceed VI_MAX_PAYLOAD: split the data over messages */
#define VI_ERR_VIN (-4)       /* vin is not 17 characters of [A-HJ-NPR-Z0-9] */
#define VI_ERR_TS (-5)        /* base_ts or a timestamp outside [0, 2^48) */
#define VI_ERR_VALUE (-6)     /* a raw / event value outside (-2^53, 2^53); quantize: not finite or too big */
#define VI_ERR_SCALE (-7)     /* scale_exp outside [-12, 12] */
#define VI_ERR_COUNT (-8)     /* no blocks / events / frames, or a count above 65535 */
#define VI_ERR_TEXT_LEN (-9)  /* an event text longer than 255 bytes */
#define VI_ERR_UTF8 (-10)     /* an event text that is not valid UTF-8 */
#define VI_ERR_CAN_ID (-11)   /* a CAN id at or above 2^11 (standard) / 2^29 (extended) */
#define VI_ERR_CAN_LEN (-12)  /* a CAN data length the frame type does not allow */

/* One signal's samples: raw[i] * 10^scale_exp measured at ts_ms[i] (ms since the Unix epoch). */
typedef struct {
    uint16_t signal_id; /* an id of schemas/signals.csv */
    int scale_exp;      /* -12 .. 12, from the catalog */
    size_t count;       /* 1 .. 65535 */
    const int64_t *ts_ms;
    const int64_t *raw; /* |raw| < 2^53; vi_quantize() makes one from a physical value */
} vi_signal_block;

/* One event: (event_id, ts_ms, value, text). */
typedef struct {
    uint16_t event_id; /* an id of schemas/events.csv */
    int64_t ts_ms;
    int64_t value;    /* |value| < 2^53; 0 when the catalog defines none */
    const char *text; /* text_len bytes of UTF-8 (need not be NUL-terminated); may be NULL when text_len is 0 */
    size_t text_len;  /* 0 .. 255 */
} vi_event;

/* One raw CAN frame. */
typedef struct {
    int64_t ts_ms;
    uint32_t id;         /* arbitration id: < 2^11, or < 2^29 when extended */
    uint8_t bus;         /* the head unit's number of the CAN interface */
    uint8_t extended;    /* 0: 11-bit id, otherwise 29-bit */
    uint8_t fd;          /* 0: classic CAN, otherwise CAN FD */
    uint8_t len;         /* classic: 0..8; FD: 0..8, 12, 16, 20, 24, 32, 48, 64 */
    const uint8_t *data; /* len bytes; may be NULL when len is 0 */
} vi_can_frame;

/* Each returns the payload length written to out[0..len), or a negative VI_ERR_*.
 * vin: NUL-terminated, 17 characters. base_ts_ms: < 2^48, typically the first timestamp.
 * Nothing is written past out[cap - 1]; on an error the contents of out are unspecified. */
long vi_encode_signals(uint8_t *out, size_t cap, const char *vin, uint64_t seq, uint64_t base_ts_ms,
                       const vi_signal_block *blocks, size_t n_blocks);
long vi_encode_events(uint8_t *out, size_t cap, const char *vin, uint64_t seq, uint64_t base_ts_ms,
                      const vi_event *events, size_t n_events);
long vi_encode_can(uint8_t *out, size_t cap, const char *vin, uint64_t seq, uint64_t base_ts_ms,
                   const vi_can_frame *frames, size_t n_frames);

/* The raw integer for a physical value at resolution 10^scale_exp, rounded half away from zero,
 * exactly as the Python encoder's quantize(). Returns 0, VI_ERR_SCALE or VI_ERR_VALUE. */
int vi_quantize(double value, int scale_exp, int64_t *raw);

/* The physical value of a raw integer, computed as the gateway does (IEEE double). */
double vi_raw_to_value(int64_t raw, int scale_exp);

/* 1 when vin is 17 characters of the ISO 3779 alphabet (upper case, no I, O, Q). */
int vi_vin_valid(const char *vin);

/* 1 when s[0..len) is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF). */
int vi_utf8_valid(const uint8_t *s, size_t len);

/* A short English description of a VI_ERR_* code. */
const char *vi_strerror(long code);

#ifdef __cplusplus
}
#endif

#endif /* VI_ENCODE_H */
