/*
 * mcload -- a small memcached text-protocol load generator for bench/memcached_bench.py.
 *
 * One thread, one epoll loop, so it uses at most one core and its cost per request is a few
 * microseconds: far below a Python server's, so our server is what it measures.  Connects to
 * 127.0.0.1 only (or the -h given).
 *
 * Modes:
 *   submit  C clients pipeline `set <fn> 0 0 <b>` (window W each) until N are STORED; W workers
 *           (-w) take them with `get <fn>/t=400` (a plain get: taken and done).  Against gearman-
 *           gateway this is background submit + work; against a real memcached use -w 0.
 *   rt      C clients each: `set <fn>/<unique>` -> STORED -> `get <fn>/<unique>/t=400` until the
 *           result comes; workers: `get <fn>/open/t=400`, then `set <fn>/close` with the workload
 *           (echo) pipelined with the next `get <fn>/open/t=400`.
 *   setget  C clients each: `set k` -> STORED -> `get k` -> VALUE (a real memcached's round trip).
 *
 * -N (rt): each client sends its set with `noreply` (pymemcache's default) and then, in a write of its own,
 *    the get of its result: no STORED to wait for.
 * -P (rt): each client sends the get of its result in the same write as its set, not after STORED.
 * -g PORT: the workers are Gearman workers on that (binary protocol) port instead: CAN_DO <fn>, GRAB_JOB,
 * NO_JOB -> PRE_SLEEP, NOOP -> GRAB_JOB, JOB_ASSIGN -> WORK_COMPLETE (the workload echoed; empty for submit)
 * pipelined with the next GRAB_JOB -- what a gearmand user's workers do, beside memcached clients.
 *
 * Prints one JSON line: {"mode", "n", "seconds", "rate", "submit_seconds", "errors", "cpu"}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CLIENT, WORKER, GWORKER };
enum { M_SUBMIT, M_RT, M_SETGET };

typedef struct {
    int fd, kind;
    char *rb; size_t rlen, rcap;
    char *wb; size_t wlen, wcap;
    long sent, done, outstanding;    /* client: requests sent / finished, in flight */
    long seq;                        /* client rt/setget: the item in flight */
    int phase;                       /* rt/setget client: 0 waiting STORED, 1 waiting VALUE */
    int ready;                       /* epoll says writable */
} conn;

static const char *host = "127.0.0.1", *fn = "bench";
static int port, gport, mode = M_SUBMIT, nclients = 4, nworkers = 2, epfd;
static int pipelined, noreply;  /* -P, -N */
static long njobs = 10000, window = 1, psize = 64, stored = 0, finished = 0, taken = 0, errors = 0;
static double tlimit = 120, t_stored = 0;
static char *payload;

static double now(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void put(conn *c, const char *data, size_t len) {
    if (c->wlen + len > c->wcap) {
        c->wcap = (c->wlen + len) * 2;
        c->wb = realloc(c->wb, c->wcap);
    }
    memcpy(c->wb + c->wlen, data, len);
    c->wlen += len;
}

static void putf(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(conn *c, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    put(c, line, (size_t)n);
}

static void flush_out(conn *c) {
    while (c->wlen) {
        ssize_t n = send(c->fd, c->wb, c->wlen, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            perror("send"); exit(2);
        }
        memmove(c->wb, c->wb + n, c->wlen - (size_t)n);
        c->wlen -= (size_t)n;
    }
    struct epoll_event ev = {.events = EPOLLIN | (c->wlen ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void send_set(conn *c, long seq) {
    if (mode == M_SUBMIT) putf(c, "set %s 0 0 %ld\r\n", fn, psize);
    else if (mode == M_RT) putf(c, "set %s/%d-%ld 0 0 %ld%s\r\n", fn, c->fd, seq, psize, noreply ? " noreply" : "");
    else putf(c, "set %s-%d-%ld 0 0 %ld\r\n", fn, c->fd, seq, psize);
    put(c, payload, (size_t)psize);
    put(c, "\r\n", 2);
}

static void send_get(conn *c) {
    if (mode == M_RT) putf(c, "get %s/%d-%ld/t=400\r\n", fn, c->fd, c->seq);
    else putf(c, "get %s-%d-%ld\r\n", fn, c->fd, c->seq);
}

static void worker_get(conn *c) {
    if (mode == M_RT) putf(c, "get %s/open/t=400\r\n", fn);
    else putf(c, "get %s/t=400\r\n", fn);
}

static void client_next(conn *c) {
    if (mode == M_SUBMIT) {
        while (c->outstanding < window && c->sent < njobs / nclients + (c->fd % nclients < njobs % nclients)) {
            send_set(c, c->sent++);
            c->outstanding++;
        }
    } else if (c->sent < njobs / nclients) {
        c->seq = c->sent++;
        c->phase = 0;
        send_set(c, c->seq);
        if (noreply && mode == M_RT) {  /* -N: pymemcache's default: the set unanswered, then the get */
            flush_out(c);               /* (a write of its own, as a client's two calls make) */
            c->phase = 1;
            send_get(c);
        } else if (pipelined && mode == M_RT) send_get(c);  /* -P: the get of its result in the same write */
    }
}

/* One complete reply at rb[0..]: its length, or 0 while incomplete.  *kind: 'S' STORED, 'E' END (miss),
 * 'V' VALUE (data at *data, *dlen), 'X' anything else. */
static size_t reply(conn *c, int *kind, char **data, long *dlen) {
    char *end = memmem(c->rb, c->rlen, "\r\n", 2);
    if (!end) return 0;
    size_t line = (size_t)(end - c->rb) + 2;
    if (!strncmp(c->rb, "STORED\r\n", 8)) { *kind = 'S'; return line; }
    if (!strncmp(c->rb, "END\r\n", 5)) { *kind = 'E'; return line; }
    if (!strncmp(c->rb, "VALUE ", 6)) {
        char *last = end;
        while (last > c->rb && last[-1] != ' ') last--;
        long bytes = atol(last);
        size_t total = line + (size_t)bytes + 2 + 5;  /* data, \r\n, END\r\n */
        if (c->rlen < total) return 0;
        *kind = 'V'; *data = c->rb + line; *dlen = bytes;
        return total;
    }
    *kind = 'X';
    return line;
}

static void handle(conn *c, int kind, char *data, long dlen) {
    if (kind == 'X') { errors++; return; }
    if (c->kind == WORKER) {
        if (kind == 'V') {
            taken++;
            if (mode == M_RT) {
                putf(c, "set %s/close 0 0 %ld\r\n", fn, dlen);
                put(c, data, (size_t)dlen);
                put(c, "\r\n", 2);
            }
        }
        if (kind == 'S') return;  /* the close's answer; the next get is already out */
        if (mode == M_SUBMIT && taken >= njobs) return;
        if (mode == M_RT && finished >= njobs) return;
        worker_get(c);
        return;
    }
    if (mode == M_SUBMIT) {
        if (kind != 'S') { errors++; return; }
        c->outstanding--;
        if (++stored == njobs) t_stored = now();
        client_next(c);
        return;
    }
    if (c->phase == 0) {
        if (kind != 'S') { errors++; return; }
        c->phase = 1;
        if (!pipelined || mode != M_RT) send_get(c);
        return;
    }
    if (kind == 'E') { send_get(c); return; }  /* not done yet: wait again */
    if (dlen != psize) errors++;
    finished++;
    client_next(c);
}

/* ---- Gearman binary workers (-g) ---- */
enum { G_CAN_DO = 1, G_PRE_SLEEP = 4, G_NOOP = 6, G_GRAB_JOB = 9, G_NO_JOB = 10, G_JOB_ASSIGN = 11,
       G_WORK_COMPLETE = 13 };

static void gput(conn *c, int type, const char *a, size_t alen, const char *b, size_t blen) {
    unsigned char h[12] = {0, 'R', 'E', 'Q'};
    uint32_t t = htonl((uint32_t)type), l = htonl((uint32_t)(alen + (b ? 1 + blen : 0)));
    memcpy(h + 4, &t, 4); memcpy(h + 8, &l, 4);
    put(c, (const char *)h, 12);
    if (alen) put(c, a, alen);
    if (b) { put(c, "", 1); put(c, b, blen); }
}

static void gworker_packet(conn *c, int type, char *d, size_t len) {
    if (type == G_NO_JOB) { gput(c, G_PRE_SLEEP, 0, 0, 0, 0); return; }
    if (type == G_NOOP) { gput(c, G_GRAB_JOB, 0, 0, 0, 0); return; }
    if (type != G_JOB_ASSIGN) { errors++; return; }
    char *fnp = memchr(d, 0, len);                       /* handle\0fn\0data */
    char *data = fnp ? memchr(fnp + 1, 0, len - (size_t)(fnp + 1 - d)) : 0;
    if (!data) { errors++; return; }
    data++;
    taken++;
    size_t dlen = len - (size_t)(data - d);
    gput(c, G_WORK_COMPLETE, d, (size_t)(fnp - d), data, mode == M_RT ? dlen : 0);
    gput(c, G_GRAB_JOB, 0, 0, 0, 0);
}

static void gworker_readable(conn *c) {
    size_t pos = 0;
    while (c->rlen - pos >= 12) {
        unsigned char *h = (unsigned char *)c->rb + pos;
        uint32_t type, len;
        memcpy(&type, h + 4, 4); memcpy(&len, h + 8, 4);
        type = ntohl(type); len = ntohl(len);
        if (c->rlen - pos < 12 + (size_t)len) break;
        gworker_packet(c, (int)type, c->rb + pos + 12, len);
        pos += 12 + len;
    }
    memmove(c->rb, c->rb + pos, c->rlen - pos);
    c->rlen -= pos;
}

static void readable(conn *c) {
    for (;;) {
        if (c->rcap - c->rlen < 65536) { c->rcap = c->rcap * 2 + 65536; c->rb = realloc(c->rb, c->rcap); }
        ssize_t n = recv(c->fd, c->rb + c->rlen, c->rcap - c->rlen, 0);
        if (n < 0) { if (errno == EAGAIN) break; perror("recv"); exit(2); }
        if (n == 0) { fprintf(stderr, "server closed a connection\n"); exit(2); }
        c->rlen += (size_t)n;
        if ((size_t)n < 65536) break;
    }
    if (c->kind == GWORKER) { gworker_readable(c); flush_out(c); return; }
    size_t pos = 0;
    for (;;) {
        int kind; char *data = 0; long dlen = 0;
        conn view = *c;
        view.rb = c->rb + pos; view.rlen = c->rlen - pos;
        size_t used = reply(&view, &kind, &data, &dlen);
        if (!used) break;
        handle(c, kind, data, dlen);
        pos += used;
    }
    memmove(c->rb, c->rb + pos, c->rlen - pos);
    c->rlen -= pos;
    flush_out(c);
}

static conn *open_conn(int kind) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(kind == GWORKER ? gport : port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) { perror("connect"); exit(2); }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    conn *c = calloc(1, sizeof *c);
    c->fd = fd; c->kind = kind;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    return c;
}

int main(int argc, char **argv) {
    int o;
    while ((o = getopt(argc, argv, "h:p:g:PNm:c:w:W:n:b:t:f:")) != -1) switch (o) {
        case 'h': host = optarg; break;           case 'p': port = atoi(optarg); break;
        case 'c': nclients = atoi(optarg); break; case 'w': nworkers = atoi(optarg); break;
        case 'W': window = atol(optarg); break;   case 'n': njobs = atol(optarg); break;
        case 'b': psize = atol(optarg); break;    case 't': tlimit = atof(optarg); break;
        case 'f': fn = optarg; break;           case 'g': gport = atoi(optarg); break;
        case 'P': pipelined = 1; break;
        case 'N': noreply = 1; break;
        case 'm': mode = !strcmp(optarg, "rt") ? M_RT : !strcmp(optarg, "setget") ? M_SETGET : M_SUBMIT; break;
        default: fprintf(stderr, "usage: mcload -p port -m submit|rt|setget [-c C] [-w W] [-W window] [-n N] [-b bytes] [-g gearman-port] [-P] [-N]\n"); return 2;
    }
    if (!port) return 2;
    payload = malloc((size_t)psize);
    for (long i = 0; i < psize; i++) payload[i] = (char)('a' + i % 26);
    epfd = epoll_create1(0);
    int nw = mode == M_SETGET ? 0 : nworkers;
    conn **all = calloc((size_t)(nclients + nw), sizeof *all);
    for (int i = 0; i < nw; i++) all[i] = open_conn(gport ? GWORKER : WORKER);
    for (int i = 0; i < nclients; i++) all[nw + i] = open_conn(CLIENT);
    double t0 = now();
    for (int i = 0; i < nw; i++) {
        if (gport) { gput(all[i], G_CAN_DO, fn, strlen(fn), 0, 0); gput(all[i], G_GRAB_JOB, 0, 0, 0, 0); }
        else worker_get(all[i]);
        flush_out(all[i]);
    }
    for (int i = 0; i < nclients; i++) { client_next(all[nw + i]); flush_out(all[nw + i]); }
    long target = mode == M_SUBMIT ? njobs : (njobs / nclients) * nclients;
    struct epoll_event evs[256];
    while (now() - t0 < tlimit) {
        if (mode == M_SUBMIT ? (stored >= target && (nw == 0 || taken >= target)) : finished >= target) break;
        int n = epoll_wait(epfd, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) flush_out(c);
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) readable(c);
        }
    }
    double t = now() - t0;
    long done = mode == M_SUBMIT ? stored : finished;
    struct rusage ru; getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("{\"mode\": \"%s\", \"n\": %ld, \"seconds\": %.4f, \"rate\": %.1f, \"submit_seconds\": %.4f, "
           "\"submit_rate\": %.1f, \"taken\": %ld, \"errors\": %ld, \"cpu\": %.3f}\n",
           mode == M_SUBMIT ? "submit" : mode == M_RT ? "rt" : "setget", done, t, done / t,
           t_stored ? t_stored - t0 : t, t_stored ? stored / (t_stored - t0) : 0.0, taken, errors, cpu);
    return done == target && !errors ? 0 : 1;
}
