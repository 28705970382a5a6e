/* vi_seq.c: persisted boot counter. See vi_seq.h. */
#define _POSIX_C_SOURCE 200809L

#include "vi_seq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BOOT_FILE "boot_counter"
#define BOOT_TMP "boot_counter.tmp"

static int join(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap ? 0 : VI_SEQ_ERR_ARG;
}

/* Reads the persisted counter: 0 and *value = 0 when the file does not exist. */
static int read_boot(const char *dir, uint32_t *value) {
    char path[VI_SEQ_PATH_MAX + 32], text[32];
    ssize_t n;
    size_t i;
    uint64_t v = 0;
    int fd;
    if (join(path, sizeof path, dir, BOOT_FILE)) return VI_SEQ_ERR_ARG;
    *value = 0;
    fd = open(path, O_RDONLY);
    if (fd < 0) return errno == ENOENT ? 0 : VI_SEQ_ERR_IO;
    do {
        n = read(fd, text, sizeof text);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0) return VI_SEQ_ERR_IO;
    /* exactly: 1..10 digits, then "\n" */
    if (n < 2 || n > 11 || text[n - 1] != '\n') return VI_SEQ_ERR_CORRUPT;
    for (i = 0; i < (size_t)n - 1; i++) {
        if (text[i] < '0' || text[i] > '9') return VI_SEQ_ERR_CORRUPT;
        v = v * 10 + (uint64_t)(text[i] - '0');
    }
    if (v > 0xffffffffu) return VI_SEQ_ERR_CORRUPT;
    *value = (uint32_t)v;
    return 0;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY), rc;
    if (fd < 0) return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* Durable replace: temp file, fsync, rename over the old one, fsync the directory. */
static int write_boot(const char *dir, uint32_t value) {
    char path[VI_SEQ_PATH_MAX + 32], tmp[VI_SEQ_PATH_MAX + 32], text[16];
    int fd, n = snprintf(text, sizeof text, "%lu\n", (unsigned long)value), saved;
    if (join(path, sizeof path, dir, BOOT_FILE) || join(tmp, sizeof tmp, dir, BOOT_TMP)) return VI_SEQ_ERR_ARG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return VI_SEQ_ERR_IO;
    if (write_all(fd, text, (size_t)n) || fsync(fd)) {
        saved = errno;
        close(fd);
        unlink(tmp);
        errno = saved;
        return VI_SEQ_ERR_IO;
    }
    if (close(fd) || rename(tmp, path) || fsync_dir(dir)) return VI_SEQ_ERR_IO;
    return 0;
}

static int new_boot(vi_seq *s, uint64_t floor_boot) {
    uint64_t next = (s->boot > floor_boot ? s->boot : floor_boot) + 1;
    int rc;
    if (next > 0xffffffffu) return VI_SEQ_ERR_EXHAUSTED;
    rc = write_boot(s->dir, (uint32_t)next);
    if (rc) return rc;
    s->boot = (uint32_t)next;
    s->counter = 0;
    return 0;
}

int vi_seq_open(vi_seq *s, const char *dir, uint64_t floor, int has_floor) {
    uint32_t stored;
    int rc;
    if (!s || !dir || strlen(dir) >= sizeof s->dir) return VI_SEQ_ERR_ARG;
    memset(s, 0, sizeof *s);
    memcpy(s->dir, dir, strlen(dir) + 1);
    rc = read_boot(dir, &stored);
    if (rc) return rc;
    s->boot = stored;
    return new_boot(s, has_floor ? floor >> 32 : 0);
}

int vi_seq_next(vi_seq *s, uint64_t *seq) {
    if (!s || !seq) return VI_SEQ_ERR_ARG;
    if (s->counter == 0xffffffffu) {
        int rc = new_boot(s, 0);
        if (rc) return rc;
    }
    s->counter++;
    *seq = ((uint64_t)s->boot << 32) | s->counter;
    return 0;
}

const char *vi_seq_strerror(int code) {
    switch (code) {
    case 0: return "ok";
    case VI_SEQ_ERR_IO: return "boot counter I/O failed";
    case VI_SEQ_ERR_CORRUPT: return "boot counter file is corrupt (refusing to guess: seqs could repeat)";
    case VI_SEQ_ERR_EXHAUSTED: return "boot counter exhausted";
    case VI_SEQ_ERR_ARG: return "bad argument (NULL or path too long)";
    default: return "unknown error";
    }
}
