/* etcdreg_bench: the workloads of the benchmark specification (shared/bench-spec.md)
 * for etcd-registry for C, one workload per process, one JSON line on stdout.
 *
 *   etcdreg_bench --workload W1|W2|W3|W4|W5 --endpoint 127.0.0.1:PORT [--timeout S]
 *                 [--n N] [--writer-mode put|txn] [--writer-cmd CMD] [--create-window K]
 *
 * W1  put latency, 1 in flight          W2  put throughput, 256 in flight
 * W3  linearizable get throughput, 256 in flight
 * W4  watch fan-out: n watches on one Watch stream, events written by a writer process
 * W5  1000 leases kept alive for 30 s by the library's keepalive (one stream)
 *
 * The W4 writer (the canonical one of the spec) is this same program:
 *
 *   etcdreg_bench --writer --endpoint E --n N --prefix /fan/k --mode put|txn --conc 1
 *                 --txn-size 100
 *
 * It prints one JSON line (with "writer_seconds") on its stdout, which the W4 watcher
 * reads through a pipe; `--writer-cmd CMD` runs `CMD <those arguments>` instead.
 *
 * Everything runs on one libuv loop, driven by the library's callbacks; no threads. One
 * client object = one HTTP/2 connection to etcd. Diagnostics go to stderr. */
#include <etcdreg.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
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
  long create_window;      /* W4: watch creates in flight at most (0 = all n at once) */
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

static pid_t g_writer_pid; /* W4: the writer child while it runs */

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  if (g_writer_pid > 0) kill(g_writer_pid, SIGKILL);
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

/* One result line: the spec's fields in the spec's order, then `extra` (starting with a
 * comma, or ""). `lat` (ns, n_lat entries) is sorted in place; n_lat 0 gives null
 * percentiles. */
typedef struct {
  long ops;
  double seconds;
  uint64_t *lat;
  long n_lat;
  double cpu, sys; /* client CPU (user+sys) and its system part over the timed phase */
  double rss;
  int conns;
  long errors, setup_errors;
} result_t;

static void print_result(const result_t *r, const char *params, const char *extra) {
  char p50[32] = "null", p99[32] = "null";
  if (r->n_lat > 0) {
    qsort(r->lat, (size_t)r->n_lat, sizeof *r->lat, cmp_u64);
    snprintf(p50, sizeof p50, "%.3f", (double)percentile(r->lat, r->n_lat, 50, 100) / 1e3);
    snprintf(p99, sizeof p99, "%.3f", (double)percentile(r->lat, r->n_lat, 99, 100) / 1e3);
  }
  printf("{\"peer\":\"%s\",\"workload\":\"%s\",\"params\":{%s},\"ops\":%ld,\"seconds\":%.6f,"
         "\"ops_per_s\":%.1f,\"p50_us\":%s,\"p99_us\":%s,\"client_cpu_s\":%.6f,"
         "\"client_cpu_us_per_op\":%.3f,\"rss_mb\":%.2f,\"tcp_conns\":%d,\"run\":\"%s\","
         "\"errors\":%ld,\"setup_errors\":%ld,\"client_sys_s\":%.6f%s}\n",
         PEER, g_opt.workload, params, r->ops, r->seconds,
         r->seconds > 0 ? (double)r->ops / r->seconds : 0.0, p50, p99, r->cpu,
         r->ops > 0 ? r->cpu * 1e6 / (double)r->ops : 0.0, r->rss, r->conns, g_run, r->errors,
         r->setup_errors, r->sys, extra);
  fflush(stdout);
  if (r->conns != 1) fprintf(stderr, "etcdreg_bench: warning: tcp_conns = %d, expected 1\n", r->conns);
}

/* Prints the result line of the timed phase `p`. `params` is a JSON object body (without
 * braces); `extra` more fields (starting with a comma) or "". */
static void report(phase_t *p, long setup_errors, const char *params, const char *extra) {
  result_t r = {0};
  r.rss = proc_status_mb("VmRSS");
  r.conns = tcp_conns(g_opt.port);
  r.ops = p->ops;
  r.seconds = (double)(p->t_end - p->t_start) / 1e9;
  r.cpu = p->cpu_end - p->cpu_start;
  r.sys = p->sys_end - p->sys_start;
  r.lat = p->lat;
  r.n_lat = p->n_lat;
  r.errors = p->errors;
  r.setup_errors = setup_errors;
  print_result(&r, params, extra);
}

/* The common part of params: client settings that shape the numbers. */
static void common_params(char *out, size_t cap, long spec_ops, int value_bytes) {
  etcdreg_client_options_t o;
  etcdreg_client_options_init(&o);
  char ep[160];
  json_str(ep, sizeof ep, g_opt.endpoint);
  int n = 0;
  if (value_bytes > 0) n = snprintf(out, cap, "\"value_bytes\":%d,", value_bytes);
  if (n < 0 || (size_t)n >= cap) return;
  n += snprintf(out + n, cap - (size_t)n,
                   "\"endpoint\":\"%s\",\"request_timeout_ms\":%u,"
                   "\"lib\":\"etcdreg %s\",\"h2_stream_window_bytes\":%u,"
                   "\"h2_conn_window_bytes\":%u,\"lib_max_retries\":%d,\"connections\":1,"
                   "\"driver\":\"libuv callbacks, one loop, no threads\"",
                   ep, REQUEST_TIMEOUT_MS, etcdreg_version(), o.stream_window_bytes,
                   o.conn_window_bytes, o.max_retries);
  if (spec_ops > 0 && g_opt.n_set && n > 0 && (size_t)n < cap)
    snprintf(out + n, cap - (size_t)n,
             ",\"deviation\":\"ops set by --n %ld (spec: %ld)\"", g_opt.n, spec_ops);
}

/* ------------------------------------------------------------------------------------ */
/* W1: put latency, 1 in flight                                                          */

static phase_t g_setup, g_warm, g_timed;

static void w1_timed_done(phase_t *p) {
  char params[1024], common[768];
  common_params(common, sizeof common, 5000, VALUE_LEN);
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
  common_params(common, sizeof common, 50000, VALUE_LEN);
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
  common_params(common, sizeof common, 50000, VALUE_LEN);
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
          "  --writer-cmd CMD  W4: run CMD as the writer instead of the built-in one\n"
          "  --create-window K W4: at most K watch creates in flight (default 0 = all at once)\n"
          "  --n N             W5: number of leases (default 1000; reported as a deviation)\n"
          "writer mode (W4's built-in writer):\n"
          "  etcdreg_bench --writer --endpoint E --n N --prefix P --mode put|txn --conc C\n"
          "                --txn-size T [--timeout S]\n");
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
                           "--writer-cmd", "--create-window"};
    const char *val = NULL;
    int which = -1;
    for (int k = 0; k < 7; k++) {
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
      case 5:
        if (!*val || strlen(val) > 4000) {
          print_error_line("bad --writer-cmd");
          return -1;
        }
        g_opt.writer_cmd = val;
        break;
      case 6:
        if (parse_long(val, &g_opt.create_window) < 0 || g_opt.create_window < 0) {
          print_error_line("bad --create-window: %s", val);
          return -1;
        }
        break;
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
/* W4: watch fan-out                                                                     */

#define W4_DEFAULT_N 1000
#define W4_EVENT_TIMEOUT_MS 120000u /* the spec's event timeout */
#define W4_WRITER_FAIL_GRACE_MS 5000u /* writer failed: events still in flight may arrive */
#define W4_WRITER_WAIT_MS 30000u      /* after the last event: the writer should exit soon */
#define W4_OUT_DRAIN_MS 2000u         /* after the writer exited: its stdout should reach EOF */
#define W4_PREFIX "/fan/k"
#define W4_TXN_SIZE 100
#define W4_READY 1u
#define W4_DEAD 2u
#define W4_RECV 4u

typedef struct {
  long n;
  long window;         /* creates in flight at most; 0 = all n at once */
  long started;        /* etcdreg_watch_start calls made */
  long established;    /* ready (created=true) */
  long settled;        /* ready, or ended before ready */
  long failed;         /* refused or ended before the timed phase */
  uint8_t *st;         /* W4_* bits per watch */
  uint64_t *recv;      /* ns, first PUT event of watch i */
  uint64_t *stamp;     /* ns, parsed from that event's value (0: unparsable) */
  long received, duplicates, bad_values, other_events, early_events, late_events;
  long ended_timed;    /* watches that ended during the timed phase */
  long dead_unreceived;
  int phase;           /* 0 setup, 1 timed, 2 waiting for the writer, 3 reported */
  uint64_t t_setup0, t_create0, t_setup1, t_timed0, t_done;
  double cpu_setup0, cpu_setup1, cpu0, cpu1, sys0, sys1;
  double rss_setup, rss_end;
  int conns_setup, conns_end;
  int timed_out;
  uv_timer_t timer;     /* event timeout, then the wait for the writer */
  uv_timer_t out_timer; /* drain of the writer's stdout after its exit */
  int timers_init;
  uv_process_t proc;
  uv_pipe_t out;
  char outbuf[16384];
  size_t outlen;
  int spawned, spawn_failed, exited, proc_open, out_open;
  int64_t exit_status;
  int term_signal;
  char spawn_error[200];
} w4_t;

static w4_t g_w4;

static void w4_pump_creates(void);
static void w4_check_setup(void);
static void w4_timed_done(int timed_out);

static void w4_on_ready(etcdreg_watch_t *wt, int64_t revision, void *data) {
  (void)wt;
  (void)revision;
  w4_t *w = &g_w4;
  long i = (long)(intptr_t)data;
  if (w->phase >= 3) return;
  w->st[i] |= W4_READY;
  w->established++;
  w->settled++;
  if (w->n >= 50000 && w->established % (w->n / 10) == 0) /* progress of large setups */
    fprintf(stderr, "etcdreg_bench: W4: %ld watches established after %.3f s (cpu %.3f s)\n",
            w->established, (double)(now_ns() - w->t_create0) / 1e9,
            cpu_s_split(NULL) - w->cpu_setup0);
  if (w->phase == 0) {
    w4_pump_creates();
    w4_check_setup();
  }
}

/* Exact decimal u64 (1..20 digits, no sign, no overflow); 0 when not. */
static uint64_t parse_stamp(const uint8_t *v, size_t len) {
  if (len == 0 || len > 20) return 0;
  uint64_t x = 0;
  for (size_t k = 0; k < len; k++) {
    if (v[k] < '0' || v[k] > '9') return 0;
    uint64_t d = (uint64_t)(v[k] - '0');
    if (x > (UINT64_MAX - d) / 10) return 0;
    x = x * 10 + d;
  }
  return x;
}

static void w4_on_events(etcdreg_watch_t *wt, int64_t revision, const etcdreg_watch_event_t *evs,
                         size_t count, void *data) {
  uint64_t t = now_ns(); /* arrival in the user callback */
  (void)wt;
  (void)revision;
  w4_t *w = &g_w4;
  long i = (long)(intptr_t)data;
  if (w->phase >= 3) return;
  for (size_t e = 0; e < count; e++) {
    if (evs[e].type != ETCDREG_EVENT_PUT) {
      w->other_events++;
      continue;
    }
    if (w->phase == 0) { /* nobody writes before the timed phase */
      w->early_events++;
      continue;
    }
    if (w->phase >= 2 && !(w->st[i] & W4_RECV)) { /* after the end (timeout): not counted */
      w->late_events++;
      continue;
    }
    if (w->st[i] & W4_RECV) {
      if (w->duplicates < MAX_ERR_LOG)
        fprintf(stderr, "etcdreg_bench: W4: duplicate event for watch %ld (mod_revision %" PRId64 ")\n",
                i, evs[e].kv.mod_revision);
      w->duplicates++;
      continue;
    }
    char key[32];
    int kl = snprintf(key, sizeof key, W4_PREFIX "%ld", i);
    uint64_t stamp = parse_stamp(evs[e].kv.value, evs[e].kv.value_len);
    if (evs[e].kv.key_len != (size_t)kl || memcmp(evs[e].kv.key, key, (size_t)kl) != 0 ||
        stamp == 0 || stamp > t) {
      if (w->bad_values < MAX_ERR_LOG)
        fprintf(stderr, "etcdreg_bench: W4: bad event for watch %ld (key %.*s, value %.*s)\n", i,
                (int)(evs[e].kv.key_len < 64 ? evs[e].kv.key_len : 64), (const char *)evs[e].kv.key,
                (int)(evs[e].kv.value_len < 32 ? evs[e].kv.value_len : 32),
                (const char *)evs[e].kv.value);
      w->bad_values++;
      stamp = 0;
    }
    w->st[i] |= W4_RECV;
    w->recv[i] = t;
    w->stamp[i] = stamp;
    w->received++;
  }
  if (w->phase == 1 && w->received + w->dead_unreceived >= w->n) w4_timed_done(0);
}

static void w4_on_ended(etcdreg_watch_t *wt, int status, int64_t compact_revision,
                        const char *reason, void *data) {
  (void)wt;
  w4_t *w = &g_w4;
  long i = (long)(intptr_t)data;
  if (w->phase >= 3) return; /* the client is closing: every watch ends */
  int was_ready = (w->st[i] & W4_READY) != 0;
  w->st[i] |= W4_DEAD;
  long nerr = w->failed + w->ended_timed;
  if (nerr < MAX_ERR_LOG)
    fprintf(stderr, "etcdreg_bench: W4: watch %ld ended (%s%s): %s: %s (compact_revision %" PRId64 ")\n",
            i, w->phase == 0 ? "setup" : "timed phase", was_ready ? ", was ready" : "",
            etcdreg_err_name(status), reason ? reason : "", compact_revision);
  if (w->phase == 0) {
    w->failed++;
    if (!was_ready) w->settled++;
    w4_pump_creates();
    w4_check_setup();
    return;
  }
  w->ended_timed++;
  if (!(w->st[i] & W4_RECV)) w->dead_unreceived++;
  if (w->phase == 1 && w->received + w->dead_unreceived >= w->n) w4_timed_done(0);
}

static void w4_pump_creates(void) {
  static const etcdreg_watch_cbs_t cbs = {.ready = w4_on_ready, .events = w4_on_events, .ended = w4_on_ended};
  w4_t *w = &g_w4;
  char key[32];
  while (w->started < w->n && (w->window <= 0 || w->started - w->settled < w->window)) {
    long i = w->started++;
    int kl = snprintf(key, sizeof key, W4_PREFIX "%ld", i);
    /* single key, from now, no filters, no prev_kv, no progress_notify */
    int rc = etcdreg_watch_start(g_client, key, (size_t)kl, NULL, &cbs, (void *)(intptr_t)i, NULL);
    if (rc < 0) {
      if (w->failed < MAX_ERR_LOG)
        fprintf(stderr, "etcdreg_bench: W4: etcdreg_watch_start %ld: %s\n", i, etcdreg_err_name(rc));
      w->st[i] |= W4_DEAD;
      w->failed++;
      w->settled++;
    }
  }
}

static void w4_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  w4_t *w = &g_w4;
  size_t room = sizeof w->outbuf - 1 - w->outlen;
  if (room == 0) { /* full: keep reading (and dropping) so the writer never blocks */
    static char sink[4096];
    *buf = uv_buf_init(sink, sizeof sink);
    return;
  }
  *buf = uv_buf_init(w->outbuf + w->outlen, (unsigned)room);
}

static void w4_maybe_report(void);

static void w4_out_closed(uv_handle_t *h) {
  (void)h;
  g_w4.out_open = 0;
  w4_maybe_report();
}

static void w4_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  w4_t *w = &g_w4;
  if (nread > 0) {
    if (buf->base == w->outbuf + w->outlen) w->outlen += (size_t)nread;
    w->outbuf[w->outlen] = '\0';
    return;
  }
  if (nread < 0 && w->out_open == 1) {
    w->out_open = 2; /* closing */
    uv_close((uv_handle_t *)s, w4_out_closed);
  }
}

static void w4_out_drain_timeout(uv_timer_t *t) {
  (void)t;
  w4_t *w = &g_w4;
  if (w->out_open == 1) {
    fprintf(stderr, "etcdreg_bench: W4: writer exited but its stdout stayed open; closing it\n");
    w->out_open = 2;
    uv_close((uv_handle_t *)&w->out, w4_out_closed);
  }
}

static void w4_proc_closed(uv_handle_t *h) {
  (void)h;
  g_w4.proc_open = 0;
  w4_maybe_report();
}

static void w4_grace_timeout(uv_timer_t *t) {
  (void)t;
  fprintf(stderr, "etcdreg_bench: W4: the writer failed; ending the timed phase with %ld of %ld events\n",
          g_w4.received, g_w4.n);
  w4_timed_done(0);
}

static void w4_on_writer_exit(uv_process_t *p, int64_t exit_status, int term_signal) {
  w4_t *w = &g_w4;
  g_writer_pid = 0;
  w->exited = 1;
  w->exit_status = exit_status;
  w->term_signal = term_signal;
  fprintf(stderr, "etcdreg_bench: W4: writer exited (status %" PRId64 ", signal %d)\n", exit_status,
          term_signal);
  uv_close((uv_handle_t *)p, w4_proc_closed);
  if (w->out_open == 1) uv_timer_start(&w->out_timer, w4_out_drain_timeout, W4_OUT_DRAIN_MS, 0);
  if (w->phase == 1 && (exit_status != 0 || term_signal != 0)) {
    uv_timer_stop(&w->timer);
    uv_timer_start(&w->timer, w4_grace_timeout, W4_WRITER_FAIL_GRACE_MS, 0);
  }
}

static char g_w4_script[4200];

static void w4_spawn_writer(void) {
  w4_t *w = &g_w4;
  static char nbuf[32], exe[4096];
  snprintf(nbuf, sizeof nbuf, "%ld", w->n);
  const char *tail[] = {"--endpoint", g_opt.endpoint, "--n", nbuf, "--prefix", W4_PREFIX,
                        "--mode", g_opt.writer_mode, "--conc", "1", "--txn-size", "100"};
  char *args[32];
  int a = 0;
  if (g_opt.writer_cmd) {
    /* CMD with the arguments appended, as the shell word list "$@" */
    snprintf(g_w4_script, sizeof g_w4_script, "exec %s \"$@\"", g_opt.writer_cmd);
    args[a++] = "/bin/sh";
    args[a++] = "-c";
    args[a++] = g_w4_script;
    args[a++] = "sh";
  } else {
    size_t sz = sizeof exe;
    int rc = uv_exepath(exe, &sz);
    if (rc < 0) snprintf(exe, sizeof exe, "/proc/self/exe");
    args[a++] = exe;
    args[a++] = "--writer";
  }
  for (size_t k = 0; k < sizeof tail / sizeof tail[0]; k++) args[a++] = (char *)tail[k];
  args[a] = NULL;

  uv_pipe_init(g_loop, &w->out, 0);
  w->out_open = 1;
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = (uv_stdio_flags)(UV_CREATE_PIPE | UV_WRITABLE_PIPE); /* child's view */
  stdio[1].data.stream = (uv_stream_t *)&w->out;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  po.exit_cb = w4_on_writer_exit;
  po.file = args[0];
  po.args = args;
  po.stdio_count = 3;
  po.stdio = stdio;
  fprintf(stderr, "etcdreg_bench: W4: spawning writer:");
  for (int k = 0; k < a; k++) fprintf(stderr, " %s", args[k]);
  fprintf(stderr, "\n");
  int rc = uv_spawn(g_loop, &w->proc, &po);
  w->proc_open = 1;
  if (rc < 0) {
    snprintf(w->spawn_error, sizeof w->spawn_error, "uv_spawn %s: %s", args[0], uv_strerror(rc));
    fprintf(stderr, "etcdreg_bench: W4: %s\n", w->spawn_error);
    w->spawn_failed = 1;
    w->exited = 1;
    w->exit_status = -1;
    uv_close((uv_handle_t *)&w->proc, w4_proc_closed);
    w->out_open = 2;
    uv_close((uv_handle_t *)&w->out, w4_out_closed);
    w4_timed_done(0);
    return;
  }
  w->spawned = 1;
  g_writer_pid = w->proc.pid;
  uv_read_start((uv_stream_t *)&w->out, w4_alloc_cb, w4_read_cb);
}

static void w4_event_timeout(uv_timer_t *t) {
  (void)t;
  fprintf(stderr, "etcdreg_bench: W4: event timeout (%u s): %ld of %ld events\n",
          W4_EVENT_TIMEOUT_MS / 1000, g_w4.received, g_w4.n);
  w4_timed_done(1);
}

static void w4_setup_done(void) {
  w4_t *w = &g_w4;
  w->t_setup1 = now_ns();
  w->cpu_setup1 = cpu_s_split(NULL);
  w->rss_setup = proc_status_mb("VmRSS"); /* RSS after all watches are established */
  w->conns_setup = tcp_conns(g_opt.port);
  w->dead_unreceived = w->failed;
  fprintf(stderr,
          "etcdreg_bench: W4: %ld watches established in %.3f s (creates %.3f s), %ld failed, "
          "rss %.1f MiB, tcp_conns %d\n",
          w->established, (double)(w->t_setup1 - w->t_setup0) / 1e9,
          (double)(w->t_setup1 - w->t_create0) / 1e9, w->failed, w->rss_setup, w->conns_setup);
  /* timed phase */
  w->phase = 1;
  g_phase_name = "W4 timed";
  w->cpu0 = cpu_s_split(&w->sys0);
  w->t_timed0 = now_ns();
  uv_timer_start(&w->timer, w4_event_timeout, W4_EVENT_TIMEOUT_MS, 0);
  if (w->dead_unreceived >= w->n) { /* nothing to wait for */
    w4_timed_done(0);
    return;
  }
  w4_spawn_writer();
}

static void w4_check_setup(void) {
  w4_t *w = &g_w4;
  if (w->phase == 0 && w->started == w->n && w->settled >= w->n) w4_setup_done();
}

static void w4_writer_wait_timeout(uv_timer_t *t) {
  (void)t;
  w4_t *w = &g_w4;
  if (w->spawned && !w->exited) {
    fprintf(stderr, "etcdreg_bench: W4: the writer is still running; killing it\n");
    uv_process_kill(&w->proc, SIGKILL);
  }
}

static void w4_timed_done(int timed_out) {
  w4_t *w = &g_w4;
  if (w->phase != 1) return;
  w->t_done = now_ns();
  w->cpu1 = cpu_s_split(&w->sys1);
  w->rss_end = proc_status_mb("VmRSS");
  w->conns_end = tcp_conns(g_opt.port);
  w->timed_out = timed_out;
  w->phase = 2;
  g_phase_name = "W4 waiting for the writer";
  uv_timer_stop(&w->timer);
  if (!w->exited)
    uv_timer_start(&w->timer, w4_writer_wait_timeout, timed_out ? 5000u : W4_WRITER_WAIT_MS, 0);
  w4_maybe_report();
}

/* "name": number in the writer's output; 1 when found */
static int json_number_field(const char *s, const char *name, double *out) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", name);
  const char *p = strstr(s, pat);
  if (!p) return 0;
  p += strlen(pat);
  while (*p == ' ') p++;
  char *end;
  double v = strtod(p, &end);
  if (end == p || !isfinite(v)) return 0;
  *out = v;
  return 1;
}

static void w4_close_handles(void) {
  w4_t *w = &g_w4;
  if (w->timers_init) {
    uv_close((uv_handle_t *)&w->timer, NULL);
    uv_close((uv_handle_t *)&w->out_timer, NULL);
    w->timers_init = 0;
  }
}

static void w4_report(void) {
  w4_t *w = &g_w4;
  /* latencies, first stamp, last arrival */
  uint64_t *lat = malloc((size_t)(w->received > 0 ? w->received : 1) * sizeof *lat);
  if (!lat) {
    print_error_line("out of memory");
    exit(1);
  }
  long n_lat = 0;
  uint64_t min_stamp = UINT64_MAX, max_recv = 0;
  for (long i = 0; i < w->n; i++) {
    if (!(w->st[i] & W4_RECV)) continue;
    if (w->recv[i] > max_recv) max_recv = w->recv[i];
    if (w->stamp[i] == 0) continue;
    if (w->stamp[i] < min_stamp) min_stamp = w->stamp[i];
    lat[n_lat++] = w->recv[i] - w->stamp[i];
  }
  double seconds = (n_lat > 0 && max_recv > min_stamp) ? (double)(max_recv - min_stamp) / 1e9 : 0.0;

  /* the writer's line */
  double wsec = 0, werr = 0;
  int have_wsec = json_number_field(w->outbuf, "writer_seconds", &wsec);
  int have_werr = json_number_field(w->outbuf, "errors", &werr);
  char *nl = strchr(w->outbuf, '\n');
  if (nl) *nl = '\0';
  int writer_bad = w->spawn_failed || w->term_signal != 0 || w->exit_status != 0;
  long writer_errors = have_werr && werr > 0 ? (long)werr : (writer_bad ? 1 : 0);

  char params[3072], common[768], writer[1200], wesc[1100];
  common_params(common, sizeof common, 0, 0);
  if (g_opt.writer_cmd) {
    json_str(wesc, sizeof wesc, g_opt.writer_cmd);
    snprintf(writer, sizeof writer, "\"writer\":\"--writer-cmd\",\"writer_cmd\":\"%s\"", wesc);
  } else {
    snprintf(writer, sizeof writer,
             "\"writer\":\"built-in: etcdreg_bench --writer (C, this library, own client and "
             "connection; one untimed Range on /fan/warmup before its first write)\"");
  }
  char window[160];
  if (w->window > 0)
    snprintf(window, sizeof window, "at most %ld creates in flight", w->window);
  else
    snprintf(window, sizeof window, "pipelined: all n creates sent at once");
  snprintf(params, sizeof params,
           "\"n\":%ld,\"writer_mode\":\"%s\",\"writer_args\":\"--endpoint %s --n %ld --prefix "
           W4_PREFIX " --mode %s --conc 1 --txn-size %d\",%s,\"watch_keys\":\"" W4_PREFIX
           "<i>\",\"watch_create\":\"%s (client-chosen watch ids, one Watch stream; a watch is "
           "established on its created=true response)\",\"create_window\":%ld,"
           "\"connect\":\"one Range on /fan/warmup, inside watch_setup_s\","
           "\"event_timeout_s\":%u,\"recv_stamp\":\"CLOCK_MONOTONIC at entry of the events "
           "callback\",\"spec_combination\":%s,%s",
           w->n, g_opt.writer_mode, g_opt.endpoint, w->n, g_opt.writer_mode, W4_TXN_SIZE, writer,
           window, w->window, W4_EVENT_TIMEOUT_MS / 1000,
           ((w->n == 1000 || w->n == 10000) ||
            (w->n == 100000 && strcmp(g_opt.writer_mode, "txn") == 0))
               ? "true"
               : "false",
           common);

  char wsec_s[32] = "null", wexit_s[32] = "null";
  if (have_wsec) snprintf(wsec_s, sizeof wsec_s, "%.6f", wsec);
  if (!w->spawn_failed)
    snprintf(wexit_s, sizeof wexit_s, "%" PRId64,
             w->term_signal ? (int64_t)(128 + w->term_signal) : w->exit_status);
  char wline[1400];
  json_str(wline, sizeof wline, w->outbuf);
  char extra[3072];
  snprintf(extra, sizeof extra,
           ",\"events_expected\":%ld,\"events_received\":%ld,\"duplicates\":%ld,"
           "\"bad_values\":%ld,\"timed_out\":%s,\"watch_setup_s\":%.6f,\"watch_setup_cpu_s\":%.6f,"
           "\"rss_end_mb\":%.2f,\"writer_seconds\":%s,\"writer_exit\":%s,"
           "\"watch_create_s\":%.6f,\"watches_established\":%ld,\"watch_failures\":%ld,"
           "\"watches_ended_timed\":%ld,\"non_put_events\":%ld,\"early_events\":%ld,"
           "\"late_events\":%ld,"
           "\"tcp_conns_setup\":%d,\"writer_signal\":%d,\"writer_errors\":%ld,"
           "\"timed_phase_wall_s\":%.6f,\"writer_output\":\"%s\"%s%s%s",
           w->n, w->received, w->duplicates, w->bad_values, w->timed_out ? "true" : "false",
           (double)(w->t_setup1 - w->t_setup0) / 1e9, w->cpu_setup1 - w->cpu_setup0, w->rss_end,
           wsec_s, wexit_s, (double)(w->t_setup1 - w->t_create0) / 1e9, w->established, w->failed,
           w->ended_timed, w->other_events, w->early_events, w->late_events, w->conns_setup, w->term_signal,
           writer_errors, (double)(w->t_done - w->t_timed0) / 1e9, wline,
           w->spawn_failed ? ",\"writer_spawn_error\":\"" : "", w->spawn_failed ? w->spawn_error : "",
           w->spawn_failed ? "\"" : "");

  result_t r = {0};
  r.ops = w->received;
  r.seconds = seconds;
  r.lat = lat;
  r.n_lat = n_lat;
  r.cpu = w->cpu1 - w->cpu0;
  r.sys = w->sys1 - w->sys0;
  r.rss = w->rss_setup; /* the spec: RSS after all watches are established */
  r.conns = w->conns_end;
  r.errors = w->ended_timed + writer_errors;
  r.setup_errors = w->failed;
  print_result(&r, params, extra);
  free(lat);
  if (w->received != w->n || w->duplicates || w->bad_values || w->timed_out)
    fprintf(stderr, "etcdreg_bench: W4: warning: %ld/%ld events, %ld duplicates, %ld bad, timed_out %d\n",
            w->received, w->n, w->duplicates, w->bad_values, w->timed_out);
  if (w->timed_out || w->received != w->n || writer_bad) g_exit_code = 1;
}

static void w4_maybe_report(void) {
  w4_t *w = &g_w4;
  if (w->phase != 2 || !w->exited || w->proc_open || w->out_open) return;
  w->phase = 3;
  g_phase_name = "W4 report";
  uv_timer_stop(&w->timer);
  uv_timer_stop(&w->out_timer);
  w4_report();
  w4_close_handles();
  finish_and_close();
}

static void w4_on_connect(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res,
                          void *data) {
  (void)res;
  (void)data;
  w4_t *w = &g_w4;
  if (status < 0) {
    print_error_line("W4 connect (Range /fan/warmup): %s: %s", etcdreg_err_name(status),
                     etcdreg_request_message(req));
    exit(1);
  }
  g_phase_name = "W4 watch setup";
  w->t_create0 = now_ns();
  w4_pump_creates();
  w4_check_setup();
}

static void w4_start(void) {
  w4_t *w = &g_w4;
  w->n = g_opt.n_set ? g_opt.n : W4_DEFAULT_N;
  w->window = g_opt.create_window;
  w->st = calloc((size_t)w->n, sizeof *w->st);
  w->recv = calloc((size_t)w->n, sizeof *w->recv);
  w->stamp = calloc((size_t)w->n, sizeof *w->stamp);
  if (!w->st || !w->recv || !w->stamp) {
    print_error_line("out of memory");
    exit(1);
  }
  uv_timer_init(g_loop, &w->timer);
  uv_timer_init(g_loop, &w->out_timer);
  w->timers_init = 1;
  fprintf(stderr, "etcdreg_bench: W4: n %ld, writer mode %s, %s\n", w->n, g_opt.writer_mode,
          w->window > 0 ? "windowed creates" : "pipelined creates");
  g_phase_name = "W4 connect";
  w->t_setup0 = now_ns();
  w->cpu_setup0 = cpu_s_split(NULL);
  int rc = etcdreg_range(g_client, "/fan/warmup", 11, NULL, w4_on_connect, NULL, NULL);
  if (rc < 0) {
    print_error_line("W4 connect (Range /fan/warmup): %s", etcdreg_err_name(rc));
    exit(1);
  }
}

/* ------------------------------------------------------------------------------------ */
/* The W4 writer (--writer): the spec's canonical writer, on its own client/connection   */

typedef struct {
  const char *endpoint;
  int port;
  long n;
  const char *prefix;
  const char *mode;
  int txn;
  long conc;
  long txn_size;
  double timeout_s;
} writer_opts_t;

typedef struct {
  long r; /* request index */
  char (*keys)[256];
  etcdreg_txn_op_t *ops;
  char val[24];
} wslot_t;

static writer_opts_t g_wo;
static struct {
  long nreq, next, completed, errors, keys_written;
  int inflight;
  wslot_t *slots;
  int *free_slots;
  int n_free;
  uint64_t t_first, t_last;
  int have_first;
  int done;
} g_wr;

static void writer_pump(void);

static void writer_maybe_done(void) {
  if (g_wr.done || g_wr.completed < g_wr.nreq) return;
  g_wr.done = 1;
  double secs = g_wr.have_first && g_wr.t_last >= g_wr.t_first
                    ? (double)(g_wr.t_last - g_wr.t_first) / 1e9 : 0.0;
  char pfx[600];
  json_str(pfx, sizeof pfx, g_wo.prefix);
  printf("{\"peer\":\"%s\",\"role\":\"writer\",\"mode\":\"%s\",\"n\":%ld,\"prefix\":\"%s\","
         "\"conc\":%ld,\"txn_size\":%ld,\"requests\":%ld,\"keys_written\":%ld,\"errors\":%ld,"
         "\"writer_seconds\":%.6f,\"first_stamp_ns\":%" PRIu64 ",\"last_response_ns\":%" PRIu64 ","
         "\"tcp_conns\":%d,\"connect\":\"one Range on /fan/warmup before the first write\"}\n",
         PEER, g_wo.mode, g_wo.n, pfx, g_wo.conc, g_wo.txn_size, g_wr.nreq,
         g_wr.keys_written, g_wr.errors, secs, g_wr.t_first, g_wr.t_last, tcp_conns(g_wo.port));
  fflush(stdout);
  fprintf(stderr, "etcdreg_bench: writer: %ld requests (%ld keys) in %.3f s, %ld errors\n",
          g_wr.nreq, g_wr.keys_written, secs, g_wr.errors);
  if (g_wr.errors) g_exit_code = 1;
  finish_and_close();
}

static void writer_complete(wslot_t *s, int ok, long keys) {
  g_wr.t_last = now_ns();
  g_wr.completed++;
  g_wr.inflight--;
  if (ok) g_wr.keys_written += keys;
  g_wr.free_slots[g_wr.n_free++] = (int)(s - g_wr.slots);
  writer_pump();
  writer_maybe_done();
}

static long writer_req_keys(long r) {
  if (!g_wo.txn) return 1;
  long first = r * g_wo.txn_size, last = first + g_wo.txn_size;
  if (last > g_wo.n) last = g_wo.n;
  return last - first;
}

static void writer_on_put(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  (void)res;
  wslot_t *s = data;
  if (status < 0) {
    if (g_wr.errors++ < MAX_ERR_LOG)
      fprintf(stderr, "etcdreg_bench: writer: put %ld: %s: %s\n", s->r, etcdreg_err_name(status),
              etcdreg_request_message(req));
  }
  writer_complete(s, status == 0, 1);
}

static void writer_on_txn(etcdreg_request_t *req, int status, const etcdreg_txn_result_t *res, void *data) {
  wslot_t *s = data;
  int ok = status == 0 && res && res->succeeded;
  if (!ok) {
    if (g_wr.errors++ < MAX_ERR_LOG)
      fprintf(stderr, "etcdreg_bench: writer: txn %ld: %s: %s\n", s->r,
              status ? etcdreg_err_name(status) : "not succeeded", etcdreg_request_message(req));
  }
  writer_complete(s, ok, writer_req_keys(s->r));
}

static void writer_pump(void) {
  while (g_wr.inflight < g_wo.conc && g_wr.next < g_wr.nreq) {
    long r = g_wr.next++;
    wslot_t *s = &g_wr.slots[g_wr.free_slots[--g_wr.n_free]];
    s->r = r;
    g_wr.inflight++;
    long first = g_wo.txn ? r * g_wo.txn_size : r;
    long nk = writer_req_keys(r);
    int klen[128];
    for (long k = 0; k < nk; k++)
      klen[k] = snprintf(s->keys[k], sizeof s->keys[k], "%s%ld", g_wo.prefix, first + k);
    /* the value: CLOCK_MONOTONIC ns immediately before the request is issued */
    uint64_t stamp = now_ns();
    int vl = snprintf(s->val, sizeof s->val, "%" PRIu64, stamp);
    if (!g_wr.have_first) {
      g_wr.have_first = 1;
      g_wr.t_first = stamp;
    }
    int rc;
    if (!g_wo.txn) {
      rc = etcdreg_put(g_client, s->keys[0], (size_t)klen[0], s->val, (size_t)vl, NULL, writer_on_put,
                       s, NULL);
    } else {
      for (long k = 0; k < nk; k++) {
        memset(&s->ops[k], 0, sizeof s->ops[k]);
        s->ops[k].type = ETCDREG_OP_PUT;
        s->ops[k].key = s->keys[k];
        s->ops[k].key_len = (size_t)klen[k];
        s->ops[k].value = s->val;
        s->ops[k].value_len = (size_t)vl;
      }
      etcdreg_txn_t t;
      memset(&t, 0, sizeof t); /* compare = [], failure = [] */
      t.success = s->ops;
      t.success_count = (size_t)nk;
      rc = etcdreg_txn(g_client, &t, writer_on_txn, s, NULL);
    }
    if (rc < 0) {
      if (g_wr.errors++ < MAX_ERR_LOG)
        fprintf(stderr, "etcdreg_bench: writer: request %ld: %s\n", r, etcdreg_err_name(rc));
      g_wr.completed++;
      g_wr.inflight--;
      g_wr.free_slots[g_wr.n_free++] = (int)(s - g_wr.slots);
    }
  }
}

static void writer_on_connect(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res,
                              void *data) {
  (void)res;
  (void)data;
  if (status < 0) {
    print_error_line("writer connect (Range /fan/warmup): %s: %s", etcdreg_err_name(status),
                     etcdreg_request_message(req));
    exit(1);
  }
  g_phase_name = "writer";
  writer_pump();
  writer_maybe_done();
}

static int writer_parse_args(int argc, char **argv) {
  g_wo.conc = 1;
  g_wo.txn_size = 100;
  g_wo.mode = "put";
  g_wo.prefix = W4_PREFIX;
  g_wo.n = -1;
  g_wo.timeout_s = 230;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--writer") == 0) continue;
    if (i + 1 >= argc) {
      print_error_line("writer: missing value for %s", a);
      return -1;
    }
    const char *v = argv[++i];
    long x;
    if (strcmp(a, "--endpoint") == 0) {
      g_wo.endpoint = v;
    } else if (strcmp(a, "--n") == 0) {
      if (parse_long(v, &x) < 0 || x < 1 || x > 100000000) goto bad;
      g_wo.n = x;
    } else if (strcmp(a, "--prefix") == 0) {
      if (!*v || strlen(v) > 200) goto bad;
      g_wo.prefix = v;
    } else if (strcmp(a, "--mode") == 0) {
      if (strcmp(v, "put") != 0 && strcmp(v, "txn") != 0) goto bad;
      g_wo.mode = v;
    } else if (strcmp(a, "--conc") == 0) {
      if (parse_long(v, &x) < 0 || x < 1 || x > 4096) goto bad;
      g_wo.conc = x;
    } else if (strcmp(a, "--txn-size") == 0) {
      if (parse_long(v, &x) < 0 || x < 1 || x > 128) goto bad;
      g_wo.txn_size = x;
    } else if (strcmp(a, "--timeout") == 0) {
      char *end;
      double t = strtod(v, &end);
      if (end == v || *end || !(t > 0) || t > 1e6) goto bad;
      g_wo.timeout_s = t;
    } else {
      print_error_line("writer: unknown argument: %s", a);
      return -1;
    }
    continue;
  bad:
    print_error_line("writer: bad %s: %s", a, v);
    return -1;
  }
  if (!g_wo.endpoint || g_wo.n < 1) {
    print_error_line("writer: --endpoint and --n are required");
    return -1;
  }
  if (parse_endpoint(g_wo.endpoint, &g_wo.port) < 0) {
    print_error_line("writer: refusing endpoint %s: only 127.0.0.1:PORT is allowed", g_wo.endpoint);
    return -1;
  }
  g_wo.txn = strcmp(g_wo.mode, "txn") == 0;
  return 0;
}

static int writer_main(int argc, char **argv) {
  g_opt.workload = "W4";
  if (writer_parse_args(argc, argv) < 0) return 2;
  g_opt.endpoint = g_wo.endpoint;
  g_opt.port = g_wo.port;
  g_opt.timeout_s = g_wo.timeout_s;
  g_wr.nreq = g_wo.txn ? (g_wo.n + g_wo.txn_size - 1) / g_wo.txn_size : g_wo.n;
  long per = g_wo.txn ? g_wo.txn_size : 1;
  g_wr.slots = calloc((size_t)g_wo.conc, sizeof *g_wr.slots);
  g_wr.free_slots = calloc((size_t)g_wo.conc, sizeof *g_wr.free_slots);
  if (!g_wr.slots || !g_wr.free_slots) return 1;
  for (long k = 0; k < g_wo.conc; k++) {
    g_wr.slots[k].keys = calloc((size_t)per, sizeof *g_wr.slots[k].keys);
    g_wr.slots[k].ops = calloc((size_t)per, sizeof *g_wr.slots[k].ops);
    if (!g_wr.slots[k].keys || !g_wr.slots[k].ops) return 1;
    g_wr.free_slots[g_wr.n_free++] = (int)(g_wo.conc - 1 - k);
  }
  fprintf(stderr, "etcdreg_bench: writer: %s mode, n %ld, %ld requests, prefix %s, conc %ld\n",
          g_wo.mode, g_wo.n, g_wr.nreq, g_wo.prefix, g_wo.conc);
  return -1; /* continue in main: client, loop */
}

/* ------------------------------------------------------------------------------------ */
/* etcd's /metrics over HTTP/1.1 (plain blocking socket; only outside timed phases)      */

typedef struct {
  int ok;
  double renewed;           /* etcd_debugging_lease_renewed_total */
  double ka_msgs;           /* grpc_server_msg_received_total{grpc_method="LeaseKeepAlive"} */
  double ka_started;        /* grpc_server_started_total{grpc_method="LeaseKeepAlive"} */
  int have_renewed, have_msgs, have_started;
  char err[160];
} metrics_t;

/* GET http://127.0.0.1:port/path with "Connection: close"; the body (de-chunked,
 * NUL-terminated, malloc'd) or NULL with `err`. */
static char *http_get(int port, const char *path, char *err, size_t errcap) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errcap, "socket: %s", strerror(errno));
    return NULL;
  }
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    snprintf(err, errcap, "connect 127.0.0.1:%d: %s", port, strerror(errno));
    close(fd);
    return NULL;
  }
  char req[256];
  int rl = snprintf(req, sizeof req,
                    "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/plain\r\n"
                    "Connection: close\r\n\r\n", path, port);
  for (int off = 0; off < rl;) {
    ssize_t w = write(fd, req + off, (size_t)(rl - off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      snprintf(err, errcap, "write: %s", strerror(errno));
      close(fd);
      return NULL;
    }
    off += (int)w;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (!buf) break;
    if (cap - len < 4096) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + len, cap - len - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      snprintf(err, errcap, "read: %s", strerror(errno));
      free(buf);
      close(fd);
      return NULL;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  close(fd);
  if (!buf) {
    snprintf(err, errcap, "out of memory");
    return NULL;
  }
  buf[len] = '\0';
  if (strncmp(buf, "HTTP/1.", 7) != 0 || len < 12 || strncmp(buf + 9, "200", 3) != 0) {
    snprintf(err, errcap, "unexpected response: %.40s", buf);
    free(buf);
    return NULL;
  }
  char *hend = strstr(buf, "\r\n\r\n");
  if (!hend) {
    snprintf(err, errcap, "no end of headers");
    free(buf);
    return NULL;
  }
  *hend = '\0';
  char *body = hend + 4;
  size_t blen = len - (size_t)(body - buf);
  int chunked = 0;
  long clen = -1;
  for (char *h = strstr(buf, "\r\n"); h; h = strstr(h, "\r\n")) {
    h += 2;
    if (strncasecmp(h, "Transfer-Encoding:", 18) == 0) {
      char *eol = strstr(h, "\r\n");
      char save = 0;
      if (eol) {
        save = *eol;
        *eol = '\0';
      }
      if (strstr(h, "chunked")) chunked = 1;
      if (eol) *eol = save;
    } else if (strncasecmp(h, "Content-Length:", 15) == 0) {
      clen = strtol(h + 15, NULL, 10);
    }
  }
  char *out = malloc(blen + 1);
  if (!out) {
    free(buf);
    snprintf(err, errcap, "out of memory");
    return NULL;
  }
  size_t olen = 0;
  if (chunked) {
    const char *p = body, *end = body + blen;
    for (;;) {
      char *e;
      unsigned long sz = strtoul(p, &e, 16);
      if (e == p) break;
      const char *crlf = strstr(e, "\r\n");
      if (!crlf) break;
      p = crlf + 2;
      if (sz == 0) break;
      if ((size_t)(end - p) < sz) sz = (unsigned long)(end - p); /* truncated */
      memcpy(out + olen, p, sz);
      olen += sz;
      p += sz;
      if (p + 2 <= end && p[0] == '\r' && p[1] == '\n') p += 2;
      if (p >= end) break;
    }
  } else {
    olen = clen >= 0 && (size_t)clen < blen ? (size_t)clen : blen;
    memcpy(out, body, olen);
  }
  out[olen] = '\0';
  free(buf);
  return out;
}

/* Sum of the samples of metric `name` whose labels contain `label` (NULL: any); found: 1 */
static int metric_sum(const char *body, const char *name, const char *label, double *sum) {
  size_t nl = strlen(name);
  int found = 0;
  double s = 0;
  for (const char *line = body; line && *line;) {
    const char *eol = strchr(line, '\n');
    size_t ll = eol ? (size_t)(eol - line) : strlen(line);
    if (line[0] != '#' && ll > nl && strncmp(line, name, nl) == 0 &&
        (line[nl] == '{' || line[nl] == ' ')) {
      const char *vstart = line + nl;
      int ok = 1;
      if (*vstart == '{') {
        const char *close_b = memchr(vstart, '}', ll - nl);
        if (!close_b) ok = 0;
        if (ok && label) {
          size_t lablen = strlen(label), span = (size_t)(close_b - vstart);
          ok = 0;
          for (size_t k = 0; k + lablen <= span; k++)
            if (memcmp(vstart + k, label, lablen) == 0) ok = 1;
        }
        vstart = close_b ? close_b + 1 : vstart;
      } else if (label) {
        ok = 0;
      }
      if (ok) {
        char *e;
        double v = strtod(vstart, &e);
        if (e != vstart) {
          s += v;
          found = 1;
        }
      }
    }
    line = eol ? eol + 1 : NULL;
  }
  *sum = s;
  return found;
}

static void read_metrics(metrics_t *m) {
  memset(m, 0, sizeof *m);
  char *body = http_get(g_opt.port, "/metrics", m->err, sizeof m->err);
  if (!body) {
    fprintf(stderr, "etcdreg_bench: GET /metrics: %s\n", m->err);
    return;
  }
  m->have_renewed = metric_sum(body, "etcd_debugging_lease_renewed_total", NULL, &m->renewed);
  m->have_msgs = metric_sum(body, "grpc_server_msg_received_total",
                            "grpc_method=\"LeaseKeepAlive\"", &m->ka_msgs);
  m->have_started = metric_sum(body, "grpc_server_started_total", "grpc_method=\"LeaseKeepAlive\"",
                               &m->ka_started);
  m->ok = m->have_renewed;
  if (!m->ok) snprintf(m->err, sizeof m->err, "etcd_debugging_lease_renewed_total not found");
  free(body);
}

/* ------------------------------------------------------------------------------------ */
/* W5: leases with the built-in keepalive                                                */

#define W5_LEASES 1000
#define W5_TTL 10
#define W5_WINDOW_S 30

typedef struct {
  long k;
  int64_t *ids;               /* 0: grant failed */
  etcdreg_keepalive_t **kas;  /* NULL once ended */
  uint64_t *lat;              /* grant + attaching put, ns */
  long n_lat;
  long i;
  uint64_t t_i0;
  long granted;
  long setup_errors, errors, renewals, lost, revoke_errors, ka_start_errors, keys_alive;
  int keys_alive_ok;
  int stopping;
  int in_window;
  long revoke_i;
  uint64_t t_setup0, t_setup1, t0, t1;
  double cpu_setup0, cpu_setup1, cpu0, cpu1, sys0, sys1;
  double rss, hwm;
  int conns;
  metrics_t m0, m1;
  uv_timer_t timer;
} w5_t;

static w5_t g_w5;

static long round_long(double x) { return (long)(x >= 0 ? x + 0.5 : x - 0.5); }

static void w5_next(void);

static void w5_on_put(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  (void)res;
  (void)data;
  w5_t *w = &g_w5;
  uint64_t t = now_ns();
  if (status < 0) {
    if (w->setup_errors++ < MAX_ERR_LOG)
      fprintf(stderr, "etcdreg_bench: W5 setup: put %ld: %s: %s\n", w->i, etcdreg_err_name(status),
              etcdreg_request_message(req));
  } else {
    w->lat[w->n_lat++] = t - w->t_i0;
  }
  w->i++;
  w5_next();
}

static void w5_on_grant(etcdreg_request_t *req, int status, const etcdreg_lease_grant_result_t *res,
                        void *data) {
  (void)data;
  w5_t *w = &g_w5;
  if (status < 0) {
    if (w->setup_errors++ < MAX_ERR_LOG)
      fprintf(stderr, "etcdreg_bench: W5 setup: grant %ld: %s: %s\n", w->i, etcdreg_err_name(status),
              etcdreg_request_message(req));
    w->i++;
    w5_next();
    return;
  }
  w->ids[w->i] = res->id;
  w->granted++;
  char key[128];
  int kl = snprintf(key, sizeof key, "/bench/%s/w5/%08ld", g_run, w->i);
  etcdreg_put_opts_t po;
  memset(&po, 0, sizeof po);
  po.lease = res->id;
  int rc = etcdreg_put(g_client, key, (size_t)kl, g_value, VALUE_LEN, &po, w5_on_put, NULL, NULL);
  if (rc < 0) {
    if (w->setup_errors++ < MAX_ERR_LOG)
      fprintf(stderr, "etcdreg_bench: W5 setup: etcdreg_put %ld: %s\n", w->i, etcdreg_err_name(rc));
    w->i++;
    w5_next();
  }
}

static void w5_on_renewed(etcdreg_keepalive_t *k, int64_t ttl, void *data) {
  (void)k;
  (void)ttl;
  (void)data;
  if (g_w5.in_window) g_w5.renewals++;
}

static void w5_on_ka_ended(etcdreg_keepalive_t *k, int status, const char *reason, void *data) {
  (void)k;
  w5_t *w = &g_w5;
  long i = (long)(intptr_t)data;
  w->kas[i] = NULL;
  if (w->stopping) return;
  w->errors++;
  if (w->lost++ < MAX_ERR_LOG)
    fprintf(stderr, "etcdreg_bench: W5: keepalive of lease %ld (%" PRIx64 ") ended: %s: %s\n", i,
            (uint64_t)w->ids[i], etcdreg_err_name(status), reason ? reason : "");
}

static void w5_report(void) {
  w5_t *w = &g_w5;
  long ops = 0;
  char ka_msgs[32] = "null", ka_streams[32] = "null", metrics_err[400] = "";
  if (w->m0.ok && w->m1.ok) ops = round_long(w->m1.renewed - w->m0.renewed);
  if (w->m0.have_msgs && w->m1.have_msgs)
    snprintf(ka_msgs, sizeof ka_msgs, "%ld", round_long(w->m1.ka_msgs - w->m0.ka_msgs));
  if (w->m0.have_started && w->m1.have_started)
    snprintf(ka_streams, sizeof ka_streams, "%ld", round_long(w->m1.ka_started - w->m0.ka_started));
  if (!w->m0.ok || !w->m1.ok) {
    char esc[340];
    json_str(esc, sizeof esc, !w->m0.ok ? w->m0.err : w->m1.err);
    snprintf(metrics_err, sizeof metrics_err, ",\"metrics_error\":\"%s\"", esc);
  }
  char ga50[32] = "null", ga99[32] = "null";
  if (w->n_lat > 0) {
    qsort(w->lat, (size_t)w->n_lat, sizeof *w->lat, cmp_u64);
    snprintf(ga50, sizeof ga50, "%.3f", (double)percentile(w->lat, w->n_lat, 50, 100) / 1e3);
    snprintf(ga99, sizeof ga99, "%.3f", (double)percentile(w->lat, w->n_lat, 99, 100) / 1e3);
  }
  char params[2048], common[768];
  common_params(common, sizeof common, 0, VALUE_LEN);
  char dev[96] = "";
  if (g_opt.n_set)
    snprintf(dev, sizeof dev, "\"deviation\":\"k (leases) set by --n %ld (spec: %d)\",", w->k,
             W5_LEASES);
  snprintf(params, sizeof params,
           "\"k\":%ld,\"ttl\":%d,\"window_s\":%d,\"setup\":\"sequential: LeaseGrant(TTL=%d) then "
           "Put(/bench/<RUN>/w5/%%08d, lease=ID); one untimed Range before\","
           "\"keepalive\":\"etcdreg_lease_keepalive_start for every lease at the window start: "
           "one LeaseKeepAlive stream, first keepalive at once, then ttl/3 after each answer\","
           "\"ops_source\":\"delta of etcd_debugging_lease_renewed_total (GET /metrics, HTTP/1.1, "
           "outside the window)\",%s%s",
           w->k, W5_TTL, W5_WINDOW_S, W5_TTL, dev, common);
  char alive[32] = "null";
  if (w->keys_alive_ok) snprintf(alive, sizeof alive, "%ld", w->keys_alive);
  char extra[1600];
  snprintf(extra, sizeof extra,
           ",\"leases\":%ld,\"keys_alive_after\":%s,\"server_keepalive_msgs\":%s,"
           "\"server_keepalive_streams_started\":%s,\"maxrss_mb\":%.2f,\"setup_s\":%.6f,"
           "\"setup_cpu_s\":%.6f,\"grant_attach_p50_us\":%s,\"grant_attach_p99_us\":%s,"
           "\"client_renewals\":%ld,\"keepalives_lost\":%ld,\"keepalive_start_errors\":%ld,"
           "\"revoke_errors\":%ld%s",
           w->granted, alive, ka_msgs, ka_streams, w->hwm,
           (double)(w->t_setup1 - w->t_setup0) / 1e9, w->cpu_setup1 - w->cpu_setup0, ga50, ga99,
           w->renewals, w->lost, w->ka_start_errors, w->revoke_errors, metrics_err);
  result_t r = {0};
  r.ops = ops;
  r.seconds = (double)(w->t1 - w->t0) / 1e9;
  r.cpu = w->cpu1 - w->cpu0;
  r.sys = w->sys1 - w->sys0;
  r.rss = w->rss;
  r.conns = w->conns;
  r.errors = w->errors + w->ka_start_errors + (w->m0.ok && w->m1.ok ? 0 : 1) +
             (w->keys_alive_ok ? 0 : 1);
  r.setup_errors = w->setup_errors;
  print_result(&r, params, extra);
  if (!w->keys_alive_ok || w->keys_alive != w->k)
    fprintf(stderr, "etcdreg_bench: W5: warning: keys_alive_after %ld, expected %ld\n", w->keys_alive, w->k);
}

static void w5_revoke_next(void);

static void w5_on_revoke(etcdreg_request_t *req, int status, const etcdreg_lease_revoke_result_t *res,
                         void *data) {
  (void)res;
  (void)data;
  if (status < 0 && g_w5.revoke_errors++ < MAX_ERR_LOG)
    fprintf(stderr, "etcdreg_bench: W5 cleanup: revoke: %s: %s\n", etcdreg_err_name(status),
            etcdreg_request_message(req));
  g_w5.revoke_i++;
  w5_revoke_next();
}

/* Cleanup (untimed): revoke every lease, one at a time, then report and close. */
static void w5_revoke_next(void) {
  w5_t *w = &g_w5;
  while (w->revoke_i < w->k) {
    int64_t id = w->ids[w->revoke_i];
    if (id == 0) {
      w->revoke_i++;
      continue;
    }
    int rc = etcdreg_lease_revoke(g_client, id, 0, w5_on_revoke, NULL, NULL);
    if (rc == 0) return;
    w->revoke_errors++;
    w->revoke_i++;
  }
  w5_report();
  uv_close((uv_handle_t *)&w->timer, NULL);
  finish_and_close();
}

static void w5_on_count(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res,
                        void *data) {
  (void)data;
  w5_t *w = &g_w5;
  if (status < 0) {
    fprintf(stderr, "etcdreg_bench: W5: count range: %s: %s\n", etcdreg_err_name(status),
            etcdreg_request_message(req));
  } else {
    w->keys_alive = (long)res->count;
    w->keys_alive_ok = 1;
  }
  /* stop the keepalives, then revoke */
  g_phase_name = "W5 cleanup";
  w->stopping = 1;
  for (long i = 0; i < w->k; i++)
    if (w->kas[i]) etcdreg_lease_keepalive_stop(w->kas[i]);
  w5_revoke_next();
}

static void w5_window_end(uv_timer_t *t) {
  (void)t;
  w5_t *w = &g_w5;
  w->t1 = now_ns();
  w->cpu1 = cpu_s_split(&w->sys1);
  w->in_window = 0;
  w->rss = proc_status_mb("VmRSS");
  w->hwm = proc_status_mb("VmHWM");
  w->conns = tcp_conns(g_opt.port);
  g_phase_name = "W5 after the window";
  read_metrics(&w->m1);
  fprintf(stderr, "etcdreg_bench: W5: window %.3f s, cpu %.3f s, client renewals %ld, server renewals %.0f\n",
          (double)(w->t1 - w->t0) / 1e9, w->cpu1 - w->cpu0, w->renewals,
          w->m0.ok && w->m1.ok ? w->m1.renewed - w->m0.renewed : -1.0);
  char prefix[64], end[64];
  int pl = snprintf(prefix, sizeof prefix, "/bench/%s/w5/", g_run);
  etcdreg_range_opts_t ro;
  memset(&ro, 0, sizeof ro);
  size_t el = etcdreg_prefix_end(prefix, (size_t)pl, (uint8_t *)end);
  ro.range_end = end;
  ro.range_end_len = el;
  ro.count_only = 1;
  int rc = etcdreg_range(g_client, prefix, (size_t)pl, &ro, w5_on_count, NULL, NULL);
  if (rc < 0) {
    fprintf(stderr, "etcdreg_bench: W5: count range: %s\n", etcdreg_err_name(rc));
    w5_on_count(NULL, rc, NULL, NULL);
  }
}

static void w5_setup_done(void) {
  w5_t *w = &g_w5;
  w->t_setup1 = now_ns();
  w->cpu_setup1 = cpu_s_split(NULL);
  fprintf(stderr, "etcdreg_bench: W5: %ld leases granted and attached in %.3f s (%ld errors)\n",
          w->n_lat, (double)(w->t_setup1 - w->t_setup0) / 1e9, w->setup_errors);
  g_phase_name = "W5 metrics";
  read_metrics(&w->m0);
  /* the window */
  g_phase_name = "W5 window";
  w->cpu0 = cpu_s_split(&w->sys0);
  w->t0 = now_ns();
  w->in_window = 1;
  static const etcdreg_keepalive_cbs_t cbs = {w5_on_renewed, w5_on_ka_ended};
  for (long i = 0; i < w->k; i++) {
    if (w->ids[i] == 0) continue;
    int rc = etcdreg_lease_keepalive_start(g_client, w->ids[i], W5_TTL, &cbs, (void *)(intptr_t)i,
                                           &w->kas[i]);
    if (rc < 0) {
      w->kas[i] = NULL;
      if (w->ka_start_errors++ < MAX_ERR_LOG)
        fprintf(stderr, "etcdreg_bench: W5: etcdreg_lease_keepalive_start %ld: %s\n", i,
                etcdreg_err_name(rc));
    }
  }
  uv_timer_start(&w->timer, w5_window_end, (uint64_t)W5_WINDOW_S * 1000u, 0);
}

static void w5_next(void) {
  w5_t *w = &g_w5;
  while (w->i < w->k) {
    w->t_i0 = now_ns();
    int rc = etcdreg_lease_grant(g_client, W5_TTL, 0, 0, w5_on_grant, NULL, NULL);
    if (rc == 0) return;
    if (w->setup_errors++ < MAX_ERR_LOG)
      fprintf(stderr, "etcdreg_bench: W5 setup: etcdreg_lease_grant %ld: %s\n", w->i, etcdreg_err_name(rc));
    w->i++;
  }
  w5_setup_done();
}

static void w5_on_connect(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res,
                          void *data) {
  (void)res;
  (void)data;
  w5_t *w = &g_w5;
  if (status < 0) {
    print_error_line("W5 connect (Range): %s: %s", etcdreg_err_name(status), etcdreg_request_message(req));
    exit(1);
  }
  g_phase_name = "W5 setup";
  w->t_setup0 = now_ns();
  w->cpu_setup0 = cpu_s_split(NULL);
  w5_next();
}

static void w5_start(void) {
  w5_t *w = &g_w5;
  w->k = g_opt.n_set ? g_opt.n : W5_LEASES;
  w->ids = calloc((size_t)w->k, sizeof *w->ids);
  w->kas = calloc((size_t)w->k, sizeof *w->kas);
  w->lat = calloc((size_t)w->k, sizeof *w->lat);
  if (!w->ids || !w->kas || !w->lat) {
    print_error_line("out of memory");
    exit(1);
  }
  uv_timer_init(g_loop, &w->timer);
  char key[64];
  int kl = snprintf(key, sizeof key, "/bench/%s/w5warm", g_run);
  g_phase_name = "W5 connect";
  int rc = etcdreg_range(g_client, key, (size_t)kl, NULL, w5_on_connect, NULL, NULL);
  if (rc < 0) {
    print_error_line("W5 connect (Range): %s", etcdreg_err_name(rc));
    exit(1);
  }
}

/* ------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  int writer = 0;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--writer") == 0) writer = 1;
  if (writer) {
    int rc = writer_main(argc, argv);
    if (rc >= 0) return rc;
  } else if (parse_args(argc, argv) < 0) {
    return 2;
  }

  make_run_id();
  memset(g_value, 'x', sizeof g_value);
  if (!writer)
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

  if (writer) {
    g_phase_name = "writer connect";
    rc = etcdreg_range(g_client, "/fan/warmup", 11, NULL, writer_on_connect, NULL, NULL);
    if (rc < 0) {
      print_error_line("writer connect: %s", etcdreg_err_name(rc));
      return 1;
    }
  } else {
    switch (g_opt.workload[1]) {
      case '1': w1_start(); break;
      case '2': w2_start(); break;
      case '3': w3_start(); break;
      case '4': w4_start(); break;
      case '5': w5_start(); break;
    }
  }

  uv_run(g_loop, UV_RUN_DEFAULT);
  if (g_client) { /* the loop ran dry with the client still open: a hang we cannot report */
    print_error_line("event loop ended before the workload finished (phase %s)", g_phase_name);
    g_exit_code = 1;
  }
  phase_free(&g_setup);
  phase_free(&g_warm);
  phase_free(&g_timed);
  free(g_w4.st);
  free(g_w4.recv);
  free(g_w4.stamp);
  free(g_w5.ids);
  free(g_w5.kas);
  free(g_w5.lat);
  for (long k = 0; g_wr.slots && k < g_wo.conc; k++) {
    free(g_wr.slots[k].keys);
    free(g_wr.slots[k].ops);
  }
  free(g_wr.slots);
  free(g_wr.free_slots);
  if (uv_loop_close(g_loop) != 0) fprintf(stderr, "etcdreg_bench: warning: uv_loop_close: handles still open\n");
  return g_exit_code;
}
