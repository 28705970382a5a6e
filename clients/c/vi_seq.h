/* vi_seq.h: message sequence numbers that never repeat, across reboots.
 *
 * The construction of schemas/WIRE_FORMAT.md section 1:
 *   seq = (uint64_t)boot_counter << 32 | counter
 * boot_counter lives in <dir>/boot_counter (decimal text, one line) and is
 * incremented and made durable (write to a temporary file, fsync, rename,
 * fsync of the directory) by vi_seq_open(), before the first publish of a
 * boot. counter lives in RAM: the first message of a boot gets counter 1. If
 * counter would pass 2^32-1, vi_seq_next() moves to a new boot counter first.
 *
 * `floor` is a defence in depth: the highest seq the store-and-forward buffer
 * ever held (vi_buffer.high_seq). The new boot counter is above both the file's
 * and the floor's, so a boot counter file lost or rolled back (restored from an
 * old image) cannot make seqs repeat while the buffer survives.
 *
 * Keep <dir> on storage that a software update or a factory reset does not erase.
 */
#ifndef VI_SEQ_H
#define VI_SEQ_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VI_SEQ_ERR_IO (-1)        /* reading or writing the boot counter failed; errno says why */
#define VI_SEQ_ERR_CORRUPT (-2)   /* the boot counter file is not a decimal number < 2^32: refusing to guess */
#define VI_SEQ_ERR_EXHAUSTED (-3) /* boot counter 2^32-1 reached: no seq left */
#define VI_SEQ_ERR_ARG (-4)       /* NULL pointer or a directory path that is too long */

#define VI_SEQ_PATH_MAX 1024

typedef struct {
    char dir[VI_SEQ_PATH_MAX];
    uint32_t boot;    /* this boot's counter (as persisted) */
    uint32_t counter; /* last counter handed out in this boot (0: none yet) */
} vi_seq;

/* Reads <dir>/boot_counter (missing: 0), picks max(it, floor >> 32 when has_floor) + 1 and persists it.
 * Returns 0 or a VI_SEQ_ERR_*. */
int vi_seq_open(vi_seq *s, const char *dir, uint64_t floor, int has_floor);

/* The next seq of this boot. Returns 0 or a VI_SEQ_ERR_* (only when a new boot counter must be persisted). */
int vi_seq_next(vi_seq *s, uint64_t *seq);

const char *vi_seq_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* VI_SEQ_H */
