/* vi_buffer.c: append-only record log with CRC-32, recovery by scanning, compaction. See vi_buffer.h. */
#define _POSIX_C_SOURCE 200809L

#include "vi_buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vi_encode.h" /* VI_MAX_PAYLOAD */

#define LOG_NAME "buffer.vib"
#define TMP_NAME "buffer.vib.tmp"
#define HDR 28 /* record header bytes before the payload */
#define REC_HEADER 1
#define REC_MESSAGE 2
#define REC_COVERED 3
#define CHUNK 8192

enum { REC_OK, REC_TORN, REC_BAD };

typedef struct {
    uint8_t type, kind;
    uint64_t a, b;
    uint32_t len;
} record;

/* --- CRC-32 (reflected, polynomial 0xEDB88320), four bits at a time --- */

static const uint32_t CRC_NIBBLE[16] = {0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4,
                                        0x4db26158, 0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c,
                                        0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c};

uint32_t vi_crc32(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        crc = (crc >> 4) ^ CRC_NIBBLE[crc & 15];
        crc = (crc >> 4) ^ CRC_NIBBLE[crc & 15];
    }
    return ~crc;
}

/* --- little-endian fields --- */

static void put_le(uint8_t *p, uint64_t v, unsigned n) {
    unsigned i;
    for (i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    while (n--) v = (v << 8) | p[n];
    return v;
}

static void encode_header(uint8_t h[HDR], const record *r) {
    memcpy(h, "VIB1", 4);
    h[4] = r->type, h[5] = r->kind, h[6] = 0, h[7] = 0;
    put_le(h + 8, r->a, 8);
    put_le(h + 16, r->b, 8);
    put_le(h + 24, r->len, 4);
}

/* 1 when the header could be a record's: the length is checked before anything trusts it. */
static int decode_header(const uint8_t h[HDR], record *r) {
    if (memcmp(h, "VIB1", 4) != 0 || h[6] != 0 || h[7] != 0) return 0;
    r->type = h[4], r->kind = h[5];
    r->a = get_le(h + 8, 8), r->b = get_le(h + 16, 8);
    r->len = (uint32_t)get_le(h + 24, 4);
    switch (r->type) {
    case REC_HEADER: return r->kind == 1 && r->b <= 1 && r->len == 0;
    case REC_MESSAGE: return r->kind >= 1 && r->kind <= 3 && r->b == 0 && r->len >= 1 && r->len <= VI_MAX_PAYLOAD;
    case REC_COVERED: return r->kind <= 1 && r->a <= r->b && r->len == 0;
    default: return 0;
    }
}

/* --- I/O that retries short reads and writes --- */

static int pread_all(int fd, void *buf, size_t n, uint64_t off) {
    uint8_t *p = buf;
    while (n) {
        ssize_t k = pread(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO; /* the file is shorter than we know it to be */
            return -1;
        }
        p += k, n -= (size_t)k, off += (uint64_t)k;
    }
    return 0;
}

static int pwrite_all(int fd, const void *buf, size_t n, uint64_t off) {
    const uint8_t *p = buf;
    while (n) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, n -= (size_t)k, off += (uint64_t)k;
    }
    return 0;
}

static int path_of(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;
    if (fd < 0) return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* --- reading records --- */

/* CRC of `n` bytes of fd from `off` on, continuing `crc`. */
static int crc_of_range(int fd, uint64_t off, uint64_t n, uint32_t *crc) {
    uint8_t chunk[CHUNK];
    while (n) {
        size_t k = n < CHUNK ? (size_t)n : CHUNK;
        if (pread_all(fd, chunk, k, off)) return -1;
        *crc = vi_crc32(*crc, chunk, k);
        off += k, n -= k;
    }
    return 0;
}

/* Reads the record at off of a file of `size` bytes. REC_TORN: it runs past the end of the file. */
static int read_record(const vi_buffer *b, uint64_t off, record *r, int *io_error) {
    uint8_t h[HDR], tail[4];
    uint32_t crc = 0;
    *io_error = 0;
    if (b->size - off < HDR + 4) return REC_TORN;
    if (pread_all(b->fd, h, HDR, off)) return *io_error = 1, REC_BAD;
    if (!decode_header(h, r)) return REC_BAD;
    if (b->size - off < (uint64_t)VI_BUF_RECORD_OVERHEAD + r->len) return REC_TORN;
    if (crc_of_range(b->fd, off, HDR + (uint64_t)r->len, &crc)) return *io_error = 1, REC_BAD;
    if (pread_all(b->fd, tail, 4, off + HDR + r->len)) return *io_error = 1, REC_BAD;
    return (uint32_t)get_le(tail, 4) == crc ? REC_OK : REC_BAD;
}

/* The offset of the next valid record at or after `from`, or b->size when there is none. */
static uint64_t next_valid(const vi_buffer *b, uint64_t from, int *io_error) {
    uint8_t chunk[CHUNK];
    uint64_t off = from;
    record r;
    *io_error = 0;
    while (off + VI_BUF_RECORD_OVERHEAD <= b->size) {
        size_t k = b->size - off < CHUNK ? (size_t)(b->size - off) : CHUNK, i;
        if (pread_all(b->fd, chunk, k, off)) return *io_error = 1, b->size;
        for (i = 0; i + 4 <= k; i++) {
            if (memcmp(chunk + i, "VIB1", 4) == 0 && read_record(b, off + i, &r, io_error) == REC_OK) return off + i;
            if (*io_error) return b->size;
        }
        off += k - 3; /* keep the last three bytes: a magic may straddle chunks */
    }
    return b->size;
}

/* --- the in-memory index --- */

size_t vi_buffer_lower_bound(const vi_buffer *b, uint64_t seq) {
    size_t lo = 0, hi = b->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->entries[mid].seq < seq) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static int reserve(vi_buffer *b) {
    vi_buffer_entry *grown;
    size_t cap;
    if (b->n < b->cap) return 0;
    cap = b->cap ? b->cap * 2 : 64;
    if (cap > (size_t)-1 / sizeof *grown) return VI_BUF_ERR_NOMEM;
    grown = realloc(b->entries, cap * sizeof *grown);
    if (!grown) return VI_BUF_ERR_NOMEM;
    b->entries = grown, b->cap = cap;
    return 0;
}

static int add_entry(vi_buffer *b, uint64_t seq, uint8_t kind, uint64_t off, uint32_t len) {
    vi_buffer_entry *e;
    int rc = reserve(b);
    if (rc) return rc;
    e = &b->entries[b->n++];
    memset(e, 0, sizeof *e);
    e->seq = seq, e->offset = off, e->len = len, e->kind = kind;
    b->pending++;
    b->live_bytes += VI_BUF_RECORD_OVERHEAD + (uint64_t)len;
    if (!b->has_high || seq > b->high_seq) b->high_seq = seq, b->has_high = 1;
    return 0;
}

/* Marks held messages in [first, last]; returns how many, and their lowest and highest seq. */
static size_t mark_covered(vi_buffer *b, uint64_t first, uint64_t last, uint64_t *lo, uint64_t *hi) {
    size_t i = vi_buffer_lower_bound(b, first), k = 0;
    for (; i < b->n && b->entries[i].seq <= last; i++) {
        vi_buffer_entry *e = &b->entries[i];
        if (e->covered) continue;
        e->covered = 1;
        if (!k) *lo = e->seq;
        *hi = e->seq;
        k++;
        b->pending--;
        b->live_bytes -= VI_BUF_RECORD_OVERHEAD + (uint64_t)e->len;
    }
    return k;
}

static void sweep(vi_buffer *b) {
    size_t i, j = 0;
    for (i = 0; i < b->n; i++) {
        if (!b->entries[i].covered) b->entries[j++] = b->entries[i];
    }
    b->n = j;
}

/* --- recovery --- */

/* 0 applied, 1 ignored (a message out of seq order: append never writes one), < 0 error. */
static int apply(vi_buffer *b, const record *r, uint64_t off) {
    uint64_t lo = 0, hi = 0;
    switch (r->type) {
    case REC_HEADER:
        if (r->b && (!b->has_high || r->a > b->high_seq)) b->high_seq = r->a, b->has_high = 1;
        return 0;
    case REC_MESSAGE:
        if (b->n && r->a <= b->entries[b->n - 1].seq) return 1;
        return add_entry(b, r->a, r->kind, off, r->len);
    default:
        mark_covered(b, r->a, r->b, &lo, &hi);
        return 0;
    }
}

static int recover(vi_buffer *b) {
    uint64_t off = 0;
    record r;
    int io = 0, rc;
    while (off < b->size) {
        if (read_record(b, off, &r, &io) == REC_OK) {
            if ((rc = apply(b, &r, off)) < 0) return rc;
            if (rc == 1) { /* counted as damage, not trusted */
                b->recovery.skipped_bytes += VI_BUF_RECORD_OVERHEAD + (uint64_t)r.len;
                b->recovery.corrupt_regions++;
            } else {
                b->recovery.records++;
            }
            off += VI_BUF_RECORD_OVERHEAD + (uint64_t)r.len;
            continue;
        }
        if (!io) {
            uint64_t next = next_valid(b, off + 1, &io);
            if (!io && next < b->size) { /* damage in the middle: skip it, keep what follows */
                b->recovery.skipped_bytes += next - off;
                b->recovery.corrupt_regions++;
                off = next;
                continue;
            }
        }
        if (io) return VI_BUF_ERR_IO;
        b->recovery.torn_bytes = b->size - off; /* a torn last record: cut it off */
        if (ftruncate(b->fd, (off_t)off) || fsync(b->fd)) return VI_BUF_ERR_IO;
        b->size = off;
    }
    sweep(b);
    b->recovery.messages = b->pending;
    return 0;
}

/* --- writing records --- */

/* Appends one record at the end; on failure the file is cut back to where it was. */
static int write_record(vi_buffer *b, const record *r, const uint8_t *payload, int sync) {
    uint8_t h[HDR], tail[4];
    uint64_t off = b->size;
    uint32_t crc;
    encode_header(h, r);
    crc = vi_crc32(vi_crc32(0, h, HDR), payload, r->len);
    put_le(tail, crc, 4);
    if (pwrite_all(b->fd, h, HDR, off) || pwrite_all(b->fd, payload, r->len, off + HDR) ||
        pwrite_all(b->fd, tail, 4, off + HDR + r->len) || (sync && fsync(b->fd))) {
        int saved = errno;
        if (ftruncate(b->fd, (off_t)off) == 0) b->size = off;
        errno = saved;
        return VI_BUF_ERR_IO;
    }
    b->size = off + VI_BUF_RECORD_OVERHEAD + r->len;
    if (!sync) b->unsynced = 1;
    return 0;
}

static int write_header(vi_buffer *b) {
    record r;
    r.type = REC_HEADER, r.kind = 1, r.a = b->has_high ? b->high_seq : 0, r.b = b->has_high ? 1 : 0, r.len = 0;
    return write_record(b, &r, NULL, 1);
}

int vi_buffer_open(vi_buffer *b, const char *dir, uint64_t max_bytes) {
    char path[VI_BUF_PATH_MAX + 32];
    struct stat st;
    int rc;
    if (!b) return VI_BUF_ERR_ARG;
    memset(b, 0, sizeof *b);
    b->fd = -1;
    if (!dir || strlen(dir) >= sizeof b->dir || max_bytes < VI_BUF_MIN_BYTES) return VI_BUF_ERR_ARG;
    memcpy(b->dir, dir, strlen(dir) + 1);
    b->max_bytes = max_bytes;
    b->compact_min = 64 * 1024;
    if (path_of(path, sizeof path, dir, TMP_NAME)) return VI_BUF_ERR_ARG;
    unlink(path); /* a compaction that did not finish: the log itself is intact */
    if (path_of(path, sizeof path, dir, LOG_NAME)) return VI_BUF_ERR_ARG;
    b->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (b->fd < 0 || fstat(b->fd, &st)) {
        vi_buffer_close(b);
        return VI_BUF_ERR_IO;
    }
    b->size = (uint64_t)st.st_size;
    rc = recover(b);
    if (!rc && b->size == 0) { /* new (or emptied) file: a header, and make its name durable */
        rc = write_header(b);
        if (!rc && fsync_dir(dir)) rc = VI_BUF_ERR_IO;
    }
    if (rc) vi_buffer_close(b);
    return rc;
}

static uint64_t dead_bytes(const vi_buffer *b) {
    uint64_t used = b->live_bytes + VI_BUF_RECORD_OVERHEAD; /* live messages and one header */
    return b->size > used ? b->size - used : 0;
}

int vi_buffer_append(vi_buffer *b, uint64_t seq, int kind, const uint8_t *payload, size_t len) {
    record r;
    uint64_t need = VI_BUF_RECORD_OVERHEAD + (uint64_t)len, start;
    int rc;
    if (!b || b->fd < 0 || !payload || len < 1 || len > VI_MAX_PAYLOAD || kind < 1 || kind > 3) {
        return VI_BUF_ERR_ARG;
    }
    if (b->has_high && seq <= b->high_seq) return VI_BUF_ERR_SEQ;
    /* compact only when that makes room: a caller retrying while full must not rewrite the file each time */
    if (b->size + need > b->max_bytes && b->size - dead_bytes(b) + need <= b->max_bytes) {
        if ((rc = vi_buffer_compact(b)) != 0) return rc;
    }
    if (b->size + need > b->max_bytes) return VI_BUF_ERR_FULL;
    if ((rc = reserve(b)) != 0) return rc; /* before writing: an on-disk record is always indexed */
    r.type = REC_MESSAGE, r.kind = (uint8_t)kind, r.a = seq, r.b = 0, r.len = (uint32_t)len;
    start = b->size;
    if ((rc = write_record(b, &r, payload, 1)) != 0) return rc;
    b->unsynced = 0; /* the fsync covered every earlier record too */
    return add_entry(b, seq, (uint8_t)kind, start, (uint32_t)len);
}

int vi_buffer_cover(vi_buffer *b, uint64_t first, uint64_t last, int rejected, size_t *n_covered) {
    uint64_t lo = 0, hi = 0;
    size_t k;
    record r;
    if (n_covered) *n_covered = 0;
    if (!b || b->fd < 0) return VI_BUF_ERR_ARG;
    if (first > last) return 0;
    k = mark_covered(b, first, last, &lo, &hi);
    if (n_covered) *n_covered = k;
    if (!k) return 0;
    /* No room for the covered record: compacting leaves the covered messages out, which records it too. */
    if (b->size + VI_BUF_RECORD_OVERHEAD > b->max_bytes) return vi_buffer_compact(b);
    /* [lo, hi] holds only seqs appended before this record, so replaying it covers exactly these. */
    r.type = REC_COVERED, r.kind = rejected ? 1 : 0, r.a = lo, r.b = hi, r.len = 0;
    return write_record(b, &r, NULL, 0);
}

int vi_buffer_commit(vi_buffer *b) {
    uint64_t dead;
    if (!b || b->fd < 0) return VI_BUF_ERR_ARG;
    if (b->unsynced) {
        if (fsync(b->fd)) return VI_BUF_ERR_IO;
        b->unsynced = 0;
    }
    sweep(b);
    dead = dead_bytes(b);
    if (dead >= b->compact_min && dead >= b->live_bytes) return vi_buffer_compact(b);
    return 0;
}

/* Copies `n` bytes from one file to another. */
static int copy_range(int from, uint64_t src, int to, uint64_t dst, uint64_t n) {
    uint8_t chunk[CHUNK];
    while (n) {
        size_t k = n < CHUNK ? (size_t)n : CHUNK;
        if (pread_all(from, chunk, k, src) || pwrite_all(to, chunk, k, dst)) return -1;
        src += k, dst += k, n -= k;
    }
    return 0;
}

int vi_buffer_compact(vi_buffer *b) {
    char path[VI_BUF_PATH_MAX + 32], tmp[VI_BUF_PATH_MAX + 32];
    vi_buffer next;
    size_t i;
    int fd, saved;
    uint64_t *offsets = NULL;
    if (!b || b->fd < 0) return VI_BUF_ERR_ARG;
    if (path_of(path, sizeof path, b->dir, LOG_NAME) || path_of(tmp, sizeof tmp, b->dir, TMP_NAME)) {
        return VI_BUF_ERR_ARG;
    }
    sweep(b);
    if (b->n && !(offsets = malloc(b->n * sizeof *offsets))) return VI_BUF_ERR_NOMEM;
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        free(offsets);
        return VI_BUF_ERR_IO;
    }
    next = *b; /* same high-water mark, a new file */
    next.fd = fd, next.size = 0;
    if (write_header(&next)) goto fail;
    for (i = 0; i < b->n; i++) {
        uint64_t len = VI_BUF_RECORD_OVERHEAD + (uint64_t)b->entries[i].len;
        if (copy_range(b->fd, b->entries[i].offset, fd, next.size, len)) goto fail;
        offsets[i] = next.size;
        next.size += len;
    }
    if (fsync(fd) || rename(tmp, path) || fsync_dir(b->dir)) goto fail;
    close(b->fd);
    b->fd = fd, b->size = next.size, b->unsynced = 0;
    for (i = 0; i < b->n; i++) b->entries[i].offset = offsets[i];
    free(offsets);
    b->compactions++;
    return 0;
fail:
    saved = errno;
    close(fd);
    unlink(tmp); /* after a failed rename the old log is still the log */
    free(offsets);
    errno = saved;
    return VI_BUF_ERR_IO;
}

long vi_buffer_read(vi_buffer *b, const vi_buffer_entry *e, uint8_t *out, size_t cap) {
    uint8_t h[HDR], tail[4];
    record r;
    uint32_t crc;
    if (!b || b->fd < 0 || !e || !out) return VI_BUF_ERR_ARG;
    if (cap < e->len) return VI_BUF_ERR_ARG;
    if (pread_all(b->fd, h, HDR, e->offset) || pread_all(b->fd, out, e->len, e->offset + HDR) ||
        pread_all(b->fd, tail, 4, e->offset + HDR + e->len)) {
        return VI_BUF_ERR_IO;
    }
    if (!decode_header(h, &r) || r.type != REC_MESSAGE || r.a != e->seq || r.len != e->len) return VI_BUF_ERR_CORRUPT;
    crc = vi_crc32(vi_crc32(0, h, HDR), out, e->len);
    if ((uint32_t)get_le(tail, 4) != crc) return VI_BUF_ERR_CORRUPT;
    return (long)e->len;
}

void vi_buffer_close(vi_buffer *b) {
    if (!b) return;
    if (b->fd >= 0) {
        if (b->unsynced) fsync(b->fd);
        close(b->fd);
    }
    free(b->entries);
    b->entries = NULL;
    b->n = b->cap = b->pending = 0;
    b->fd = -1;
}

const char *vi_buffer_strerror(int code) {
    switch (code) {
    case 0: return "ok";
    case VI_BUF_ERR_IO: return "buffer I/O failed";
    case VI_BUF_ERR_FULL: return "buffer full (nothing unreceipted is dropped: waiting for receipts)";
    case VI_BUF_ERR_SEQ: return "seq not above every seq already buffered (reused seq)";
    case VI_BUF_ERR_ARG: return "bad argument";
    case VI_BUF_ERR_CORRUPT: return "buffered record does not match its CRC";
    case VI_BUF_ERR_NOMEM: return "out of memory for the buffer index";
    default: return "unknown error";
    }
}
