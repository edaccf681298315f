// The measuring end of bench/hw_latency.sh, run inside the hardware-test VM (static: nothing else
// is there). Two modes:
//
//   hw_latency press PULL VALUE N [WARMUP]
//       N presses of a gpio-sim button wired active low (after WARMUP unmeasured ones): writes
//       "pull-down" to PULL (the button's sysfs `pull`) and waits until VALUE (the remote output's
//       sysfs `value`) is 1; then "pull-up" and until it is 0. Prints the press and release
//       latencies: p50, p99, min, max in microseconds, twice:
//         press, release                  from the kernel's trace: a marker written just before the
//                                         `pull` write, to the gpio_value event of the output being
//                                         set (tracefs; the precise figure)
//         press_polled, release_polled    until a tight loop reading VALUE sees the change
//       Without tracefs only the polled figures are printed, as press and release.
//   hw_latency tcp N [WARMUP]
//       the reference: a forked echo server on 127.0.0.1 and N round trips of 16 bytes from a
//       client with TCP_NODELAY, blocking reads (as a node waits); same figures.
//
// The VM has one CPU: a plain busy loop would take it from the nodes it waits for. The poller runs
// under SCHED_IDLE, so any woken node preempts it at once; but then it sees the change only once
// every process has nothing left to do (the acknowledgement back, the sender's log line): the
// polled figure is the time until the fleet is idle again, an upper bound. The trace says when the
// kernel set the line.
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <arpa/inet.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char* what) {
    fprintf(stderr, "hw_latency: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int cmp_u64(const void* a, const void* b) {
    const uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
    return x < y ? -1 : x > y;
}

// p50 and p99 by the nearest-rank method.
static void report(const char* what, uint64_t* ns, int n) {
    qsort(ns, (size_t)n, sizeof *ns, cmp_u64);
    const int i50 = (n * 50 + 99) / 100 - 1, i99 = (n * 99 + 99) / 100 - 1;
    printf("%s n=%d p50_us=%.1f p99_us=%.1f min_us=%.1f max_us=%.1f\n", what, n, ns[i50 < 0 ? 0 : i50] / 1e3,
           ns[i99 < 0 ? 0 : i99] / 1e3, ns[0] / 1e3, ns[n - 1] / 1e3);
    fflush(stdout);
}

static void idle_priority(void) {
    struct sched_param p = {0};
    if (sched_setscheduler(0, SCHED_IDLE, &p) != 0) die("sched_setscheduler(SCHED_IDLE)");
}

static const char* const tracing = "/sys/kernel/debug/tracing";

static int write_file(const char* dir, const char* name, const char* text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    const int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0) return -1;
    const ssize_t w = write(fd, text, strlen(text));
    close(fd);
    return w < 0 ? -1 : 0;
}

// tracefs: the gpio_value event on, an empty buffer; the marker's descriptor, or -1 without tracing.
static int trace_start(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/trace_marker", tracing);
    if (access(path, W_OK) != 0) return -1;
    if (write_file(tracing, "buffer_size_kb", "4096") || write_file(tracing, "trace", "") ||
        write_file(tracing, "events/gpio/gpio_value/enable", "1") || write_file(tracing, "tracing_on", "1"))
        return -1;
    return open(path, O_WRONLY);
}

// The trace's timestamp (seconds, microsecond digits) of a line whose event starts at `event`.
static uint64_t trace_ns(const char* line, const char* event) {
    const char* p = event;
    while (p > line && p[-1] == ' ') --p;  // "   12.345678: event"
    if (p > line && p[-1] == ':') --p;
    const char* b = p;
    while (b > line && b[-1] != ' ') --b;
    unsigned long sec = 0, usec = 0;
    if (sscanf(b, "%lu.%lu", &sec, &usec) != 2) return 0;
    return (uint64_t)sec * 1000000000u + (uint64_t)usec * 1000u;
}

// From each marker "P i" / "R i" to the next gpio_value event setting a line to 1 / 0.
static int trace_collect(uint64_t* down, uint64_t* up, int n) {
    write_file(tracing, "tracing_on", "0");
    write_file(tracing, "events/gpio/gpio_value/enable", "0");
    char path[256];
    snprintf(path, sizeof path, "%s/trace", tracing);
    FILE* f = fopen(path, "r");
    if (!f) return -1;
    char line[512];
    int got = 0, index = -1;
    char kind = 0;
    uint64_t t0 = 0;
    while (fgets(line, sizeof line, f)) {
        const char* m = strstr(line, "tracing_mark_write: ");
        const char* v = strstr(line, "gpio_value: ");
        if (m) {
            char k;
            int i;
            if (sscanf(m + strlen("tracing_mark_write: "), "%c %d", &k, &i) == 2 && (k == 'P' || k == 'R')) {
                kind = k, index = i, t0 = trace_ns(line, m);
            }
        } else if (v && kind && index >= 0 && index < n) {
            unsigned gpio;
            char op[8];
            int level;
            if (sscanf(v + strlen("gpio_value: "), "%u %7s %d", &gpio, op, &level) != 3 || strcmp(op, "set") != 0) continue;
            if (level != (kind == 'P')) continue;
            const uint64_t t = trace_ns(line, v);
            (kind == 'P' ? down : up)[index] = t > t0 ? t - t0 : 0;
            got += kind == 'P';
            kind = 0;
        }
    }
    fclose(f);
    return got == n ? 0 : -1;
}

static void mark(int fd, char kind, int i) {
    if (fd < 0 || i < 0) return;
    char text[32];
    const int len = snprintf(text, sizeof text, "%c %d", kind, i);
    if (write(fd, text, (size_t)len) < 0) die("write trace_marker");
}

static void put(int fd, const char* text) {
    if (pwrite(fd, text, strlen(text), 0) < 0) die("write pull");
}

// Until VALUE reads `want`; 0 on a timeout of 10 s.
static uint64_t wait_value(int fd, char want, uint64_t t0) {
    char c[4];
    for (unsigned long spins = 0;; ++spins) {
        if (pread(fd, c, sizeof c, 0) < 1) die("read value");
        if (c[0] == want) return now_ns() - t0;
        if ((spins & 1023) == 0 && now_ns() - t0 > 10000000000ull) return 0;
    }
}

static int press(const char* pull_path, const char* value_path, int n, int warmup) {
    const int pull = open(pull_path, O_WRONLY);
    if (pull < 0) die(pull_path);
    const int value = open(value_path, O_RDONLY);
    if (value < 0) die(value_path);
    uint64_t* down = calloc((size_t)n, sizeof *down);
    uint64_t* up = calloc((size_t)n, sizeof *up);
    uint64_t* tdown = calloc((size_t)n, sizeof *tdown);
    uint64_t* tup = calloc((size_t)n, sizeof *tup);
    if (!down || !up || !tdown || !tup) die("calloc");
    const int marker = trace_start();
    idle_priority();
    for (int i = -warmup; i < n; ++i) {
        mark(marker, 'P', i);
        uint64_t t0 = now_ns();
        put(pull, "pull-down");
        const uint64_t d = wait_value(value, '1', t0);
        if (!d) { fprintf(stderr, "hw_latency: press %d: the output did not go to 1 in 10 s\n", i); return 1; }
        mark(marker, 'R', i);
        t0 = now_ns();
        put(pull, "pull-up");
        const uint64_t u = wait_value(value, '0', t0);
        if (!u) { fprintf(stderr, "hw_latency: release %d: the output did not go to 0 in 10 s\n", i); return 1; }
        if (i >= 0) { down[i] = d; up[i] = u; }
    }
    if (marker >= 0 && trace_collect(tdown, tup, n) == 0) {
        report("press", tdown, n);
        report("release", tup, n);
        report("press_polled", down, n);
        report("release_polled", up, n);
    } else {
        if (marker >= 0) fprintf(stderr, "hw_latency: the trace lacks events: polled figures only\n");
        report("press", down, n);
        report("release", up, n);
    }
    return 0;
}

static int tcp(int n, int warmup) {
    const int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(listener, (struct sockaddr*)&a, sizeof a) || listen(listener, 1) ||
        getsockname(listener, (struct sockaddr*)&a, &len))
        die("bind");
    const int one = 1;
    const pid_t server = fork();
    if (server < 0) die("fork");
    if (server == 0) {  // the echo server: each read answered by one write
        const int c = accept(listener, NULL, NULL);
        if (c < 0) die("accept");
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char buf[64];
        ssize_t r;
        while ((r = read(c, buf, sizeof buf)) > 0)
            if (write(c, buf, (size_t)r) != r) die("echo write");
        _exit(0);
    }
    close(listener);
    const int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr*)&a, sizeof a)) die("connect");
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint64_t* rt = calloc((size_t)n, sizeof *rt);
    if (!rt) die("calloc");
    char msg[16] = "0123456789abcdef", back[16];
    for (int i = -warmup; i < n; ++i) {
        const uint64_t t0 = now_ns();
        if (write(s, msg, sizeof msg) != (ssize_t)sizeof msg) die("write");
        size_t got = 0;
        while (got < sizeof back) {
            const ssize_t r = read(s, back + got, sizeof back - got);
            if (r <= 0) die("read");
            got += (size_t)r;
        }
        if (i >= 0) rt[i] = now_ns() - t0;
    }
    close(s);
    waitpid(server, NULL, 0);
    report("tcp", rt, n);
    return 0;
}

int main(int argc, char** argv) {
    if (argc >= 5 && strcmp(argv[1], "press") == 0)
        return press(argv[2], argv[3], atoi(argv[4]), argc > 5 ? atoi(argv[5]) : 10);
    if (argc >= 3 && strcmp(argv[1], "tcp") == 0) return tcp(atoi(argv[2]), argc > 3 ? atoi(argv[3]) : 100);
    fprintf(stderr, "usage: hw_latency press PULL VALUE N [WARMUP] | hw_latency tcp N [WARMUP]\n");
    return 2;
}
