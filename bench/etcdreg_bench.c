/* etcdreg_bench: the workloads of the benchmark specification (shared/bench-spec.md)
 * for etcd-registry for C, one workload per process, one JSON line on stdout.
 *
 *   etcdreg_bench --workload W1|W2|W3|W4|W5 --endpoint 127.0.0.1:PORT [--timeout S]
 *                 [--n N] [--writer-mode put|txn] [--writer-cmd CMD]
 *
 * W1  put latency, 1 in flight          W2  put throughput, 256 in flight
 * W3  linearizable get throughput, 256 in flight
 * W4/W5 (watch fan-out, leases) are not implemented in this build: they print the spec's
 * error line and exit non-zero.
 *
 * Everything runs on one libuv loop, driven by the library's callbacks; no threads. One
 * client object = one HTTP/2 connection to etcd. Diagnostics go to stderr. */
#include <etcdreg.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define PEER "c-etcdreg"
#define VALUE_LEN 64
#define REQUEST_TIMEOUT_MS 10000u /* per-RPC deadline of the spec */
#define MAX_ERR_LOG 10            /* error messages printed to stderr per phase */

/* ------------------------------------------------------------------------------------ */
/* Options and global state                                                              */

typedef struct {
  const char *workload; /* "W1".."W5" */
  const char *endpoint; /* "127.0.0.1:PORT" */
  int port;
  double timeout_s;
  long n; /* --n: W4 watch count; W1..W3: overrides ops (a deviation, printed in params) */
  int n_set;
  const char *writer_mode; /* W4 */
  const char *writer_cmd;  /* W4 */
} bench_opts_t;

static bench_opts_t g_opt;
static char g_run[9];
static char g_value[VALUE_LEN];
static uv_loop_t *g_loop;
static uv_timer_t g_watchdog;
static etcdreg_client_t *g_client;
static const char *g_phase_name = "start";
static int g_exit_code;

/* ------------------------------------------------------------------------------------ */
/* Small helpers                                                                         */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* user + system CPU seconds of the whole process; the system part in *sys when not NULL */
static double cpu_s_split(double *sys) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  if (sys) *sys = s;
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + s;
}


/* VmRSS (or another "Vm..." line) of /proc/self/status in MiB; -1 when unreadable. */
static double proc_status_mb(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  size_t fl = strlen(field);
  double mb = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
      long kib = strtol(line + fl + 1, NULL, 10);
      mb = (double)kib / 1024.0;
      break;
    }
  }
  fclose(f);
  return mb;
}

/* Number of ESTABLISHED TCP sockets owned by this process whose remote port is `port`:
 * socket inodes of /proc/self/fd matched against /proc/net/tcp and /proc/net/tcp6. */
static int tcp_conns(int port) {
  unsigned long inodes[1024];
  size_t n_inodes = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[300], link[128];
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    ssize_t l = readlink(path, link, sizeof link - 1);
    if (l <= 0) continue;
    link[l] = '\0';
    unsigned long ino;
    if (sscanf(link, "socket:[%lu]", &ino) == 1 && n_inodes < sizeof inodes / sizeof inodes[0])
      inodes[n_inodes++] = ino;
  }
  closedir(d);
  int count = 0;
  const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
  for (size_t fi = 0; fi < 2; fi++) {
    FILE *f = fopen(files[fi], "r");
    if (!f) continue;
    char line[512];
    if (!fgets(line, sizeof line, f)) { /* header */
      fclose(f);
      continue;
    }
    while (fgets(line, sizeof line, f)) {
      char local[64], remote[64];
      unsigned st;
      unsigned long ino;
      /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
      if (sscanf(line, " %*s %63s %63s %x %*s %*s %*s %*s %*s %lu", local, remote, &st, &ino) != 4)
        continue;
      if (st != 0x01) continue; /* TCP_ESTABLISHED */
      const char *colon = strrchr(remote, ':');
      if (!colon) continue;
      long rport = strtol(colon + 1, NULL, 16);
      if (rport != port) continue;
      for (size_t i = 0; i < n_inodes; i++)
        if (inodes[i] == ino) {
          count++;
          break;
        }
    }
    fclose(f);
  }
  return count;
}

static void make_run_id(void) {
  unsigned char b[4] = {0};
  int ok = 0;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ok = read(fd, b, sizeof b) == (ssize_t)sizeof b;
    close(fd);
  }
  if (!ok) { /* fallback: time and pid */
    uint64_t x = now_ns() ^ ((uint64_t)getpid() << 32);
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 32;
    memcpy(b, &x, sizeof b);
  }
  snprintf(g_run, sizeof g_run, "%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
}

/* JSON string escaping into a fixed buffer (for error messages and the endpoint). */
static void json_str(char *out, size_t cap, const char *s) {
  size_t o = 0;
  if (cap == 0) return;
  for (; *s && o + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
}

/* Prints {"peer","workload","error"} on stdout (and the message on stderr). */
static void print_error_line(const char *fmt, ...) {
  char msg[512], esc[1100];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_str(esc, sizeof esc, msg);
  printf("{\"peer\":\"%s\",\"workload\":\"%s\",\"error\":\"%s\"}\n", PEER,
         g_opt.workload ? g_opt.workload : "", esc);
  fflush(stdout);
  fprintf(stderr, "etcdreg_bench: %s\n", msg);
}

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  print_error_line("timeout after %g s (watchdog --timeout) in phase %s", g_opt.timeout_s,
                   g_phase_name);
  fflush(stderr);
  _exit(3);
}

/* ------------------------------------------------------------------------------------ */
/* Closed loop with C in flight                                                          */

typedef enum { OP_PUT, OP_GET } op_kind_t;

typedef struct phase phase_t;
typedef void (*phase_done_cb)(phase_t *p);

typedef struct {
  phase_t *phase;
  long i;       /* operation index */
  uint64_t t0;  /* monotonic ns just before the API call */
} slot_t;

struct phase {
  const char *name;
  op_kind_t kind;
  const char *key_fmt; /* with one %08ld for the index */
  long ops;
  long key_mod;        /* >0: key index = i mod key_mod */
  int conc;
  int check_value;     /* gets: verify the value */
  int record;          /* record latencies */
  long next;           /* the shared counter "i" */
  long completed;
  int inflight;
  int finished;
  long errors;
  long bad_values;
  uint64_t *lat;       /* ns, successful ops only */
  long n_lat;
  slot_t *slots;       /* conc slots */
  int *free_slots;     /* stack of free slot indexes */
  int n_free;
  phase_done_cb done;
  /* timing (filled by run/finish) */
  uint64_t t_start, t_end;
  double cpu_start, cpu_end;
  double sys_start, sys_end; /* the system part of the above */
};

static void phase_pump(phase_t *p);

static void log_op_error(phase_t *p, long i, etcdreg_request_t *req, int status, const char *where) {
  if (p->errors <= MAX_ERR_LOG) {
    fprintf(stderr, "etcdreg_bench: %s op %ld: %s: %s (%s) grpc-status %d: %s\n", p->name, i,
            where, etcdreg_err_name(status), etcdreg_strerror(status),
            req ? etcdreg_request_grpc_status(req) : -1, req ? etcdreg_request_message(req) : "");
  }
}

static void phase_complete_op(phase_t *p, slot_t *s, int ok, uint64_t t1) {
  if (ok && p->record) p->lat[p->n_lat++] = t1 - s->t0;
  p->completed++;
  p->inflight--;
  p->free_slots[p->n_free++] = (int)(s - p->slots);
}

static void phase_maybe_finish(phase_t *p) {
  if (p->finished || p->completed < p->ops) return;
  p->finished = 1;
  p->t_end = now_ns();
  p->cpu_end = cpu_s_split(&p->sys_end);
  p->done(p);
}

static void on_put(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  uint64_t t1 = now_ns();
  slot_t *s = data;
  phase_t *p = s->phase;
  (void)res;
  if (status < 0) {
    p->errors++;
    log_op_error(p, s->i, req, status, "put");
  }
  phase_complete_op(p, s, status == 0, t1);
  phase_pump(p);
  phase_maybe_finish(p);
}

static void on_get(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  uint64_t t1 = now_ns();
  slot_t *s = data;
  phase_t *p = s->phase;
  if (status < 0) {
    p->errors++;
    log_op_error(p, s->i, req, status, "range");
  } else if (p->check_value) {
    if (res->kv_count != 1 || res->kvs[0].value_len != VALUE_LEN ||
        memcmp(res->kvs[0].value, g_value, VALUE_LEN) != 0) {
      if (p->bad_values < MAX_ERR_LOG)
        fprintf(stderr, "etcdreg_bench: %s op %ld: bad value (kv_count %zu, value_len %zu)\n",
                p->name, s->i, res->kv_count, res->kv_count ? res->kvs[0].value_len : 0);
      p->bad_values++;
    }
  }
  phase_complete_op(p, s, status == 0, t1);
  phase_pump(p);
  phase_maybe_finish(p);
}

/* Issues operations while fewer than `conc` are in flight and some remain. */
static void phase_pump(phase_t *p) {
  char key[128];
  while (p->inflight < p->conc && p->next < p->ops) {
    long i = p->next++;
    long ki = p->key_mod > 0 ? i % p->key_mod : i;
    int kl = snprintf(key, sizeof key, p->key_fmt, g_run, ki);
    slot_t *s = &p->slots[p->free_slots[--p->n_free]];
    s->phase = p;
    s->i = i;
    p->inflight++;
    int rc;
    s->t0 = now_ns();
    if (p->kind == OP_PUT) {
      rc = etcdreg_put(g_client, key, (size_t)kl, g_value, VALUE_LEN, NULL, on_put, s, NULL);
    } else {
      rc = etcdreg_range(g_client, key, (size_t)kl, NULL, on_get, s, NULL);
    }
    if (rc < 0) { /* never fires its callback: count it as a completed failure */
      p->errors++;
      log_op_error(p, i, NULL, rc, p->kind == OP_PUT ? "etcdreg_put" : "etcdreg_range");
      phase_complete_op(p, s, 0, 0);
    }
  }
}

static void phase_init(phase_t *p, const char *name, op_kind_t kind, const char *key_fmt, long ops,
                       int conc, long key_mod, int record, int check_value, phase_done_cb done) {
  memset(p, 0, sizeof *p);
  p->name = name;
  p->kind = kind;
  p->key_fmt = key_fmt;
  p->ops = ops;
  p->conc = conc;
  p->key_mod = key_mod;
  p->record = record;
  p->check_value = check_value;
  p->done = done;
  p->slots = calloc((size_t)conc, sizeof *p->slots);
  p->free_slots = calloc((size_t)conc, sizeof *p->free_slots);
  p->lat = record ? calloc((size_t)(ops > 0 ? ops : 1), sizeof *p->lat) : NULL;
  if (!p->slots || !p->free_slots || (record && !p->lat)) {
    print_error_line("out of memory");
    exit(1);
  }
  for (int k = 0; k < conc; k++) p->free_slots[p->n_free++] = conc - 1 - k;
}

static void phase_free(phase_t *p) {
  free(p->slots);
  free(p->free_slots);
  free(p->lat);
  p->slots = NULL;
  p->free_slots = NULL;
  p->lat = NULL;
}

static void phase_run(phase_t *p) {
  g_phase_name = p->name;
  fprintf(stderr, "etcdreg_bench: %s: %ld ops, %d in flight\n", p->name, p->ops, p->conc);
  p->cpu_start = cpu_s_split(&p->sys_start);
  p->t_start = now_ns();
  phase_pump(p);
  phase_maybe_finish(p); /* ops == 0, or every call failed synchronously */
}

/* ------------------------------------------------------------------------------------ */
/* Results                                                                               */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Nearest rank: lat[ceil(q_num/q_den * n) - 1], clamped; exact integer arithmetic. */
static uint64_t percentile(const uint64_t *sorted, long n, long q_num, long q_den) {
  long idx = (q_num * n + q_den - 1) / q_den - 1;
  if (idx < 0) idx = 0;
  if (idx > n - 1) idx = n - 1;
  return sorted[idx];
}

static void on_client_closed(etcdreg_client_t *c, void *data) {
  (void)c;
  (void)data;
  g_client = NULL;
}

static void finish_and_close(void) {
  uv_timer_stop(&g_watchdog);
  uv_close((uv_handle_t *)&g_watchdog, NULL);
  if (g_client) etcdreg_client_close(g_client, on_client_closed, NULL);
}

/* Prints the result line of the timed phase `p`. `params` is a JSON object body (without
 * braces); `extra` more fields (starting with a comma) or "". */
static void report(phase_t *p, long setup_errors, const char *params, const char *extra) {
  double rss = proc_status_mb("VmRSS");
  int conns = tcp_conns(g_opt.port);
  double seconds = (double)(p->t_end - p->t_start) / 1e9;
  double cpu = p->cpu_end - p->cpu_start;
  char p50[32] = "null", p99[32] = "null";
  if (p->n_lat > 0) {
    qsort(p->lat, (size_t)p->n_lat, sizeof *p->lat, cmp_u64);
    snprintf(p50, sizeof p50, "%.3f", (double)percentile(p->lat, p->n_lat, 50, 100) / 1e3);
    snprintf(p99, sizeof p99, "%.3f", (double)percentile(p->lat, p->n_lat, 99, 100) / 1e3);
  }
  printf("{\"peer\":\"%s\",\"workload\":\"%s\",\"params\":{%s},\"ops\":%ld,\"seconds\":%.6f,"
         "\"ops_per_s\":%.1f,\"p50_us\":%s,\"p99_us\":%s,\"client_cpu_s\":%.6f,"
         "\"client_cpu_us_per_op\":%.3f,\"rss_mb\":%.2f,\"tcp_conns\":%d,\"run\":\"%s\","
         "\"errors\":%ld,\"setup_errors\":%ld,\"client_sys_s\":%.6f%s}\n",
         PEER, g_opt.workload, params, p->ops, seconds, seconds > 0 ? (double)p->ops / seconds : 0.0,
         p50, p99, cpu, p->ops > 0 ? cpu * 1e6 / (double)p->ops : 0.0, rss, conns, g_run,
         p->errors, setup_errors, p->sys_end - p->sys_start, extra);
  fflush(stdout);
  if (conns != 1) fprintf(stderr, "etcdreg_bench: warning: tcp_conns = %d, expected 1\n", conns);
}

/* The common part of params: client settings that shape the numbers. */
static void common_params(char *out, size_t cap, long spec_ops) {
  etcdreg_client_options_t o;
  etcdreg_client_options_init(&o);
  char ep[160];
  json_str(ep, sizeof ep, g_opt.endpoint);
  int n = snprintf(out, cap,
                   "\"value_bytes\":%d,\"endpoint\":\"%s\",\"request_timeout_ms\":%u,"
                   "\"lib\":\"etcdreg %s\",\"h2_stream_window_bytes\":%u,"
                   "\"h2_conn_window_bytes\":%u,\"lib_max_retries\":%d,\"connections\":1,"
                   "\"driver\":\"libuv callbacks, one loop, no threads\"",
                   VALUE_LEN, ep, REQUEST_TIMEOUT_MS, etcdreg_version(), o.stream_window_bytes,
                   o.conn_window_bytes, o.max_retries);
  if (g_opt.n_set && n > 0 && (size_t)n < cap)
    snprintf(out + n, cap - (size_t)n,
             ",\"deviation\":\"ops set by --n %ld (spec: %ld)\"", g_opt.n, spec_ops);
}

/* ------------------------------------------------------------------------------------ */
/* W1: put latency, 1 in flight                                                          */

static phase_t g_setup, g_warm, g_timed;

static void w1_timed_done(phase_t *p) {
  char params[1024], common[768];
  common_params(common, sizeof common, 5000);
  snprintf(params, sizeof params, "\"ops\":%ld,\"conc\":%d,\"warmup\":%ld,%s", p->ops, p->conc,
           g_warm.ops, common);
  report(p, g_warm.errors, params, "");
  finish_and_close();
}

static void w1_warm_done(phase_t *p) {
  (void)p;
  long ops = g_opt.n_set ? g_opt.n : 5000;
  phase_init(&g_timed, "W1 timed", OP_PUT, "/bench/%s/w1/%08ld", ops, 1, 0, 1, 0, w1_timed_done);
  phase_run(&g_timed);
}

static void w1_start(void) {
  phase_init(&g_warm, "W1 warm-up", OP_PUT, "/bench/%s/w1warm/%08ld", 100, 1, 0, 0, 0, w1_warm_done);
  phase_run(&g_warm);
}

/* ------------------------------------------------------------------------------------ */
/* W2: put throughput, 256 in flight                                                     */

static void w2_timed_done(phase_t *p) {
  char params[1024], common[768];
  common_params(common, sizeof common, 50000);
  snprintf(params, sizeof params, "\"ops\":%ld,\"conc\":%d,\"warmup\":%ld,\"warmup_conc\":%d,%s",
           p->ops, p->conc, g_warm.ops, g_warm.conc, common);
  report(p, g_warm.errors, params, "");
  finish_and_close();
}

static void w2_warm_done(phase_t *p) {
  (void)p;
  long ops = g_opt.n_set ? g_opt.n : 50000;
  phase_init(&g_timed, "W2 timed", OP_PUT, "/bench/%s/w2/%08ld", ops, 256, 0, 1, 0, w2_timed_done);
  phase_run(&g_timed);
}

static void w2_start(void) {
  phase_init(&g_warm, "W2 warm-up", OP_PUT, "/bench/%s/w2warm/%08ld", 2000, 256, 0, 0, 0,
             w2_warm_done);
  phase_run(&g_warm);
}

/* ------------------------------------------------------------------------------------ */
/* W3: linearizable get throughput, 256 in flight over 1000 keys                         */

static void w3_timed_done(phase_t *p) {
  char params[1200], common[768], extra[64];
  common_params(common, sizeof common, 50000);
  snprintf(params, sizeof params,
           "\"ops\":%ld,\"conc\":%d,\"keys\":%ld,\"serializable\":false,\"setup_puts\":%ld,"
           "\"setup_conc\":%d,\"warmup\":%ld,\"warmup_conc\":%d,%s",
           p->ops, p->conc, p->key_mod, g_setup.ops, g_setup.conc, g_warm.ops, g_warm.conc, common);
  snprintf(extra, sizeof extra, ",\"bad_values\":%ld", p->bad_values);
  report(p, g_setup.errors + g_warm.errors + g_warm.bad_values, params, extra);
  finish_and_close();
}

static void w3_warm_done(phase_t *p) {
  (void)p;
  long ops = g_opt.n_set ? g_opt.n : 50000;
  phase_init(&g_timed, "W3 timed", OP_GET, "/bench/%s/w3/%08ld", ops, 256, 1000, 1, 1,
             w3_timed_done);
  phase_run(&g_timed);
}

static void w3_setup_done(phase_t *p) {
  (void)p;
  phase_init(&g_warm, "W3 warm-up", OP_GET, "/bench/%s/w3/%08ld", 2000, 256, 1000, 0, 1,
             w3_warm_done);
  phase_run(&g_warm);
}

static void w3_start(void) {
  phase_init(&g_setup, "W3 setup", OP_PUT, "/bench/%s/w3/%08ld", 1000, 64, 0, 0, 0, w3_setup_done);
  phase_run(&g_setup);
}

/* ------------------------------------------------------------------------------------ */
/* Arguments                                                                             */

static void usage(FILE *f) {
  fprintf(f,
          "usage: etcdreg_bench --workload W1|W2|W3|W4|W5 --endpoint 127.0.0.1:PORT\n"
          "                     [--timeout S] [--n N] [--writer-mode put|txn] [--writer-cmd CMD]\n"
          "  --timeout S       process watchdog in seconds (default 120; 240 for W4)\n"
          "  --n N             W4: number of watches; W1-W3: override ops (reported)\n"
          "  --writer-mode M   W4 writer mode, put (default) or txn\n"
          "  --writer-cmd CMD  W4: run CMD as the writer instead of the built-in one\n");
}

static int parse_long(const char *s, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end) return -1;
  *out = v;
  return 0;
}

/* Only 127.0.0.1:PORT is accepted (the spec: traffic only to 127.0.0.1). */
static int parse_endpoint(const char *ep, int *port) {
  static const char pfx[] = "127.0.0.1:";
  if (strncmp(ep, pfx, sizeof pfx - 1) != 0) return -1;
  const char *ps = ep + sizeof pfx - 1;
  if (!*ps) return -1;
  for (const char *c = ps; *c; c++)
    if (!isdigit((unsigned char)*c)) return -1;
  long p;
  if (parse_long(ps, &p) < 0 || p < 1 || p > 65535) return -1;
  *port = (int)p;
  return 0;
}

static int parse_args(int argc, char **argv) {
  double timeout = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      exit(0);
    }
    const char *names[] = {"--workload", "--endpoint", "--timeout", "--n", "--writer-mode",
                           "--writer-cmd"};
    const char *val = NULL;
    int which = -1;
    for (int k = 0; k < 6; k++) {
      size_t l = strlen(names[k]);
      if (strncmp(a, names[k], l) == 0 && (a[l] == '\0' || a[l] == '=')) {
        which = k;
        if (a[l] == '=') {
          val = a + l + 1;
        } else if (i + 1 < argc) {
          val = argv[++i];
        } else {
          print_error_line("missing value for %s", names[k]);
          return -1;
        }
        break;
      }
    }
    if (which < 0) {
      print_error_line("unknown argument: %s", a);
      usage(stderr);
      return -1;
    }
    switch (which) {
      case 0: g_opt.workload = val; break;
      case 1: g_opt.endpoint = val; break;
      case 2: {
        char *end;
        errno = 0;
        timeout = strtod(val, &end);
        if (errno || end == val || *end || !(timeout > 0) || timeout > 1e6) {
          print_error_line("bad --timeout: %s", val);
          return -1;
        }
        break;
      }
      case 3:
        if (parse_long(val, &g_opt.n) < 0 || g_opt.n < 1 || g_opt.n > 100000000) {
          print_error_line("bad --n: %s", val);
          return -1;
        }
        g_opt.n_set = 1;
        break;
      case 4:
        if (strcmp(val, "put") != 0 && strcmp(val, "txn") != 0) {
          print_error_line("bad --writer-mode: %s (put or txn)", val);
          return -1;
        }
        g_opt.writer_mode = val;
        break;
      case 5: g_opt.writer_cmd = val; break;
    }
  }
  static const char *const workloads[] = {"W1", "W2", "W3", "W4", "W5"};
  int known = 0;
  for (int k = 0; k < 5 && g_opt.workload; k++)
    if (strcmp(g_opt.workload, workloads[k]) == 0) known = 1;
  if (!known) {
    const char *w = g_opt.workload;
    g_opt.workload = w ? w : "";
    print_error_line("--workload must be one of W1..W5 (got %s)", w ? w : "nothing");
    return -1;
  }
  if (!g_opt.endpoint) {
    print_error_line("--endpoint 127.0.0.1:PORT is required");
    return -1;
  }
  if (parse_endpoint(g_opt.endpoint, &g_opt.port) < 0) {
    print_error_line("refusing endpoint %s: only 127.0.0.1:PORT is allowed", g_opt.endpoint);
    return -1;
  }
  if (!g_opt.writer_mode) g_opt.writer_mode = "put";
  if (timeout > 0) {
    g_opt.timeout_s = timeout;
  } else {
    g_opt.timeout_s = strcmp(g_opt.workload, "W4") == 0 ? 240 : 120;
  }
  return 0;
}

/* ------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  if (parse_args(argc, argv) < 0) return 2;

  if (strcmp(g_opt.workload, "W4") == 0 || strcmp(g_opt.workload, "W5") == 0) {
    print_error_line("%s not implemented in this build", g_opt.workload);
    return 4;
  }

  make_run_id();
  memset(g_value, 'x', sizeof g_value);
  fprintf(stderr, "etcdreg_bench: %s run %s endpoint %s timeout %g s\n", g_opt.workload, g_run,
          g_opt.endpoint, g_opt.timeout_s);

  g_loop = uv_default_loop();
  uv_timer_init(g_loop, &g_watchdog);
  uv_timer_start(&g_watchdog, on_watchdog, (uint64_t)(g_opt.timeout_s * 1000.0), 0);

  etcdreg_client_options_t o;
  etcdreg_client_options_init(&o);
  const char *eps[] = {g_opt.endpoint, NULL};
  o.endpoints = eps;
  o.request_timeout_ms = REQUEST_TIMEOUT_MS;
  int rc = etcdreg_client_new(g_loop, &o, &g_client);
  if (rc < 0) {
    print_error_line("etcdreg_client_new: %s (%s)", etcdreg_strerror(rc), etcdreg_last_option_error());
    return 1;
  }

  switch (g_opt.workload[1]) {
    case '1': w1_start(); break;
    case '2': w2_start(); break;
    case '3': w3_start(); break;
  }

  uv_run(g_loop, UV_RUN_DEFAULT);
  if (g_client) { /* the loop ran dry with the client still open: a hang we cannot report */
    print_error_line("event loop ended before the workload finished (phase %s)", g_phase_name);
    g_exit_code = 1;
  }
  phase_free(&g_setup);
  phase_free(&g_warm);
  phase_free(&g_timed);
  if (uv_loop_close(g_loop) != 0) fprintf(stderr, "etcdreg_bench: warning: uv_loop_close: handles still open\n");
  return g_exit_code;
}
