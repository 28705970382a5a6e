/* vi_receipt.h: decoder for the gateway's receipts (topic vi/v1/<VIN>/receipt).
 *
 * A receipt is a msgpack array of 5:
 *   [0] version  uint, 1
 *   [1] kind     uint, 16 (receipt)
 *   [2] vin      str, 17 bytes
 *   [3] stored   array of [first_seq, last_seq] (uint, inclusive), ascending and disjoint
 *   [4] rejected array of [seq uint, reason str (UTF-8)]
 * with nothing after it. Every msgpack width of int (a signed encoding only for
 * a non-negative value), array and str is accepted. vi_receipt_parse() checks
 * the whole receipt (every declared length against the bytes left) before the
 * caller acts on any of it; anything else is refused with a VI_RCPT_ERR_* code
 * and the offset of the element at fault. No allocation: the result points into
 * the caller's bytes, which must outlive it.
 */
#ifndef VI_RECEIPT_H
#define VI_RECEIPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VI_RECEIPT_VERSION 1
#define VI_RECEIPT_KIND 16

#define VI_RCPT_ERR_TRUNCATED (-1) /* an element cut short, or a declared length beyond the bytes left */
#define VI_RCPT_ERR_TYPE (-2)      /* an element of the wrong msgpack type (or a negative int) */
#define VI_RCPT_ERR_SHAPE (-3)     /* an array with the wrong number of elements */
#define VI_RCPT_ERR_VERSION (-4)   /* version is not 1 */
#define VI_RCPT_ERR_KIND (-5)      /* kind is not 16 */
#define VI_RCPT_ERR_VIN (-6)       /* vin is not 17 bytes */
#define VI_RCPT_ERR_ORDER (-7)     /* a stored range with first > last, or ranges not ascending and disjoint */
#define VI_RCPT_ERR_UTF8 (-8)      /* a reason that is not valid UTF-8 */
#define VI_RCPT_ERR_TRAILING (-9)  /* bytes after the receipt */
#define VI_RCPT_ERR_ARG (-10)      /* a NULL pointer */

typedef struct {
    const uint8_t *vin; /* 17 bytes inside the payload, not NUL-terminated */
    size_t n_stored;    /* [first, last] ranges */
    size_t n_rejected;  /* [seq, reason] pairs */
    /* private: iteration state */
    const uint8_t *end, *stored_pos, *rejected_pos;
    size_t stored_left, rejected_left;
} vi_receipt;

/* Checks p[0..n) completely. Returns 0 and fills *r, or a VI_RCPT_ERR_* code and sets
 * *error_offset (if not NULL) to the offset of the element at fault. */
int vi_receipt_parse(const uint8_t *p, size_t n, vi_receipt *r, size_t *error_offset);

/* Next stored range; returns 1, or 0 when there are no more. */
int vi_receipt_next_stored(vi_receipt *r, uint64_t *first, uint64_t *last);

/* Next rejection; *reason points at reason_len bytes of UTF-8 (not NUL-terminated). Returns 1 or 0. */
int vi_receipt_next_rejected(vi_receipt *r, uint64_t *seq, const char **reason, size_t *reason_len);

const char *vi_receipt_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* VI_RECEIPT_H */
