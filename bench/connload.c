/* connload: connect/close cycles against a TCP server, from several processes, in C.
 *
 * What PHP or Perl web apps do that open a Gearman connection per page view: connect, close, again. Each of
 * -c processes runs its share of -n cycles, as fast as connect() returns; every connect is timed. A
 * connect that takes longer than -s seconds (default 0.5) met a full accept queue: the SYN was dropped and
 * retried a second later. With -w the client first waits for the server to answer one request (-m, a
 * Gearman ECHO_REQ by default) so that the server has accepted and served the connection before it closes.
 *
 *   gcc -O2 -o connload bench/connload.c
 *   ./connload -p 4730 -n 20000 -c 4        # prints one JSON line
 *
 * Output: {"cycles", "seconds", "cycles_per_s", "slow", "errors", "p50_ms", "p99_ms", "max_ms"}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int compare(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Gearman ECHO_REQ with a 4-byte payload; the answer is 16 bytes. */
static const unsigned char ECHO[] = {0, 'R', 'E', 'Q', 0, 0, 0, 16, 0, 0, 0, 4, 'p', 'i', 'n', 'g'};
#define ECHO_ANSWER 16

static int one_cycle(const struct sockaddr_in *to, int wait_answer, float *seconds) {
    double start = now();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)to, sizeof *to) < 0) {
        close(fd);
        return -1;
    }
    *seconds = (float)(now() - start);
    if (wait_answer) {
        unsigned char buffer[64];
        size_t got = 0;
        if (write(fd, ECHO, sizeof ECHO) != sizeof ECHO) {
            close(fd);
            return -1;
        }
        while (got < ECHO_ANSWER) {
            ssize_t n = read(fd, buffer, sizeof buffer);
            if (n <= 0) {
                close(fd);
                return -1;
            }
            got += (size_t)n;
        }
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 4730, cycles = 20000, processes = 4, wait_answer = 0;
    double slow_after = 0.5;
    int option;
    while ((option = getopt(argc, argv, "h:p:n:c:s:w")) != -1) {
        switch (option) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'n': cycles = atoi(optarg); break;
        case 'c': processes = atoi(optarg); break;
        case 's': slow_after = atof(optarg); break;
        case 'w': wait_answer = 1; break;
        default:
            fprintf(stderr, "usage: %s [-h host] [-p port] [-n cycles] [-c processes] [-s slow seconds] [-w]\n",
                    argv[0]);
            return 2;
        }
    }
    if (processes < 1 || cycles < processes) {
        fprintf(stderr, "need at least one cycle per process\n");
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, host, &to.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", host);
        return 2;
    }
    /* every connect's time (-1: failed), shared with the children */
    float *times = mmap(NULL, sizeof(float) * (size_t)cycles, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                        -1, 0);
    if (times == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    double start = now();
    for (int p = 0; p < processes; p++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            for (int i = p; i < cycles; i += processes) {
                if (one_cycle(&to, wait_answer, &times[i]) < 0)
                    times[i] = -1;
            }
            _exit(0);
        }
    }
    for (int p = 0; p < processes; p++)
        wait(NULL);
    double elapsed = now() - start;
    int errors = 0, slow = 0, good = 0;
    for (int i = 0; i < cycles; i++) {
        if (times[i] < 0)
            errors++;
        else {
            if (times[i] > slow_after)
                slow++;
            times[good++] = times[i];
        }
    }
    qsort(times, (size_t)good, sizeof(float), compare);
    double p50 = good ? times[good / 2] : 0, p99 = good ? times[(int)(good * 0.99)] : 0;
    double worst = good ? times[good - 1] : 0;
    printf("{\"cycles\": %d, \"seconds\": %.3f, \"cycles_per_s\": %.1f, \"slow\": %d, \"errors\": %d, "
           "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}\n",
           good, elapsed, good / elapsed, slow, errors, p50 * 1e3, p99 * 1e3, worst * 1e3);
    return errors ? 1 : 0;
}
