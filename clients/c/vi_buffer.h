/* vi_buffer.h: on-disk store-and-forward buffer that survives power loss.
 *
 * One append-only file, <dir>/buffer.vib, of records:
 *
 *   off  size  field
 *     0     4  magic "VIB1"
 *     4     1  type: 1 header, 2 message, 3 covered
 *     5     1  header: format 1; message: kind (1 signals, 2 events, 3 CAN); covered: 0 stored, 1 rejected
 *     6     2  reserved, 0
 *     8     8  header: highest seq ever appended; message: seq; covered: first seq
 *    16     8  header: 1 when the highest seq is set, else 0; message: 0; covered: last seq
 *    24     4  payload length (messages only; 0 otherwise), at most 262144
 *    28     n  payload (the exact bytes published)
 *  28+n     4  CRC-32 (IEEE, as zlib) of bytes 0 .. 28+n-1
 *
 * integers little-endian. vi_buffer_append() returns only after the record is
 * on disk (fsync), so a message is durable before it is published. A receipt
 * appends "covered" records (vi_buffer_cover, made durable by vi_buffer_commit);
 * losing one to a crash only means a harmless resend. When covered records make
 * up more than half of the file, vi_buffer_commit() compacts it: the live
 * messages are copied to buffer.vib.tmp, fsync, rename, fsync of the directory.
 *
 * vi_buffer_open() recovers by scanning: a record counts only with a valid
 * header, a length within the file and a matching CRC. A torn last record (a
 * crash during append) is cut off; a bad record followed by valid ones (bad
 * storage, not a crash) is skipped and counted, and scanning resumes at the
 * next valid record, so one bad sector does not take the records after it.
 *
 * The file never grows past max_bytes: when a message does not fit even after
 * compaction, vi_buffer_append() refuses it with VI_BUF_ERR_FULL and changes
 * nothing (and does no I/O, so retrying is cheap). Nothing unreceipted is ever
 * dropped to make room. Compaction needs free space for a second copy of the
 * live records while it runs.
 *
 * Not thread-safe; one process per directory.
 */
#ifndef VI_BUFFER_H
#define VI_BUFFER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VI_BUF_ERR_IO (-1)      /* a read, write, fsync or rename failed; errno says why */
#define VI_BUF_ERR_FULL (-2)    /* the message does not fit within max_bytes */
#define VI_BUF_ERR_SEQ (-3)     /* seq not above every seq appended before (a reused seq) */
#define VI_BUF_ERR_ARG (-4)     /* bad argument: NULL, kind, empty or oversize payload, path too long */
#define VI_BUF_ERR_CORRUPT (-5) /* a record read back does not match its CRC */
#define VI_BUF_ERR_NOMEM (-6)   /* the in-memory index could not grow */

#define VI_BUF_RECORD_OVERHEAD 32 /* bytes per record beside the payload */
#define VI_BUF_PATH_MAX 1024
#define VI_BUF_MIN_BYTES 4096

/* One message held until a receipt covers it. */
typedef struct {
    uint64_t seq;
    uint64_t offset; /* of its record in the file */
    uint32_t len;    /* payload bytes */
    uint8_t kind;    /* 1 signals, 2 events, 3 CAN */
    uint8_t covered; /* set by vi_buffer_cover; swept by vi_buffer_commit */
    /* Free for the caller (the publisher's send state). RAM only; zero after open and append. */
    uint8_t state;
    int32_t mid;
    uint32_t attempts;
    int64_t due_ms;
} vi_buffer_entry;

/* What vi_buffer_open() found. */
typedef struct {
    uint64_t records;         /* valid records read */
    uint64_t messages;        /* messages not yet covered */
    uint64_t torn_bytes;      /* cut off the end: a record torn by a crash */
    uint64_t skipped_bytes;   /* bad bytes skipped between valid records (storage damage) */
    uint64_t corrupt_regions; /* how many such stretches */
} vi_buffer_recovery;

typedef struct {
    int fd;
    char dir[VI_BUF_PATH_MAX];
    uint64_t size;       /* file size */
    uint64_t live_bytes; /* bytes of records of uncovered messages */
    uint64_t max_bytes;
    uint64_t compact_min; /* compact only when at least this many bytes are dead (default 64 KiB) */
    uint64_t high_seq;    /* highest seq ever appended (valid when has_high) */
    int has_high;
    int unsynced; /* covered records written since the last fsync */
    vi_buffer_entry *entries; /* ascending seq; may include covered ones until the next commit */
    size_t n, cap;
    size_t pending; /* entries not covered */
    uint64_t compactions;
    vi_buffer_recovery recovery;
} vi_buffer;

/* Opens (creating if needed) <dir>/buffer.vib, recovering as described above. max_bytes >= 4096. */
int vi_buffer_open(vi_buffer *b, const char *dir, uint64_t max_bytes);

/* Appends a message and fsyncs it; on return the message survives a power cut. */
int vi_buffer_append(vi_buffer *b, uint64_t seq, int kind, const uint8_t *payload, size_t len);

/* Marks every held message with first <= seq <= last as covered (rejected: 0 stored, 1 rejected)
 * and appends a covered record (not yet fsynced). *n_covered (if not NULL): how many it took. */
int vi_buffer_cover(vi_buffer *b, uint64_t first, uint64_t last, int rejected, size_t *n_covered);

/* fsyncs covered records, drops covered entries from the index, compacts when worthwhile. */
int vi_buffer_commit(vi_buffer *b);

/* Rewrites the file with the uncovered messages only. */
int vi_buffer_compact(vi_buffer *b);

/* Reads an entry's payload (checking its CRC) into out; returns its length or a VI_BUF_ERR_*. */
long vi_buffer_read(vi_buffer *b, const vi_buffer_entry *e, uint8_t *out, size_t cap);

/* Index of the first entry with seq >= seq (b->n when none). */
size_t vi_buffer_lower_bound(const vi_buffer *b, uint64_t seq);

void vi_buffer_close(vi_buffer *b);

/* CRC-32 as zlib's crc32(): vi_crc32(0, p, n) starts a new one; pass the result back in to continue. */
uint32_t vi_crc32(uint32_t crc, const uint8_t *p, size_t n);

const char *vi_buffer_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* VI_BUFFER_H */
