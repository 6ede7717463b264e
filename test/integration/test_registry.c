/* The service registry against a real etcd: open/close, groups (create-or-join, get,
 * configure with CAS, update with a function, list, delete), validation messages, data
 * written by the Go library read back, the exact JSON written, registrations (lease,
 * granted TTL, collisions, lost lease and deleted key repaired, shared lease, 10 000 on one
 * lease), empty-group cleanup, and close with everything active. Watches, etcd restarts
 * and compaction are in test_registry_watch.c.
 *
 * Three groups, each with its own etcd: RBAC (a user limited to the base), the main one,
 * and an etcd with a tiny space quota (lease grants refused). Every test uses its own base
 * so tests never see each other's keys. Logs that callbacks write into are static (they
 * outlive every callback even when a test fails half-way and the teardown closes what the
 * test left open). */
#include <fnmatch.h>
#include <signal.h>
#include <time.h>

#include "itest.h"
#include "tproxy.h"

/* ------------------------------------------------------------------------------------ */
/* small helpers                                                                        */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void tick_cb(uv_timer_t *t) { (void)t; }

/* Runs the loop until `cond` holds; fails after `ms`. A ticker keeps UV_RUN_ONCE from
 * blocking forever so the condition is re-checked at least every 20 ms. */
#define WAIT_FOR(loop, cond, ms)                                                          \
  do {                                                                                    \
    uv_timer_t tk_;                                                                       \
    uv_timer_init((loop), &tk_);                                                          \
    uv_timer_start(&tk_, tick_cb, 20, 20);                                                \
    uint64_t t0_ = now_ms();                                                              \
    while (!(cond) && now_ms() - t0_ < (uint64_t)(ms)) uv_run((loop), UV_RUN_ONCE);        \
    uv_close((uv_handle_t *)&tk_, NULL);                                                  \
    uv_run((loop), UV_RUN_NOWAIT);                                                        \
    if (!(cond)) fail_msg("%s:%d: timed out after %llu ms waiting for: %s", __FILE__, __LINE__, \
                          (unsigned long long)(ms), #cond);                               \
  } while (0)

static void idle(uv_loop_t *loop, uint64_t ms) {
  int done = 0;
  uv_timer_t t;
  uv_timer_init(loop, &t);
  t.data = &done;
  uv_timer_start(&t, itest_watchdog_cb, ms, 0);
  while (!done) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}

/* Go's time.Time.UTC().MarshalJSON() without the quotes. */
static void fmt_time(int64_t ns, char *buf, size_t len) {
  time_t s = (time_t)(ns / 1000000000);
  long frac = (long)(ns % 1000000000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char base[40];
  strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!frac) {
    snprintf(buf, len, "%sZ", base);
    return;
  }
  char f[16];
  snprintf(f, sizeof(f), "%09ld", frac);
  for (int i = 8; i > 0 && f[i] == '0'; i--) f[i] = 0;
  snprintf(buf, len, "%s.%sZ", base, f);
}

static void labels_str(const etcdreg_label_t *l, size_t n, char *buf, size_t len) {
  buf[0] = 0;
  size_t off = 0;
  for (size_t i = 0; i < n && off < len; i++)
    off += (size_t)snprintf(buf + off, len - off, "%s%s=%s", i ? "," : "", l[i].key, l[i].value);
}

/* ------------------------------------------------------------------------------------ */
/* fixture: a loop, a raw client, a second raw client, and the registries a test opened */

#define MAX_REGS 4
typedef struct {
  uv_loop_t loop;
  etcdreg_client_t *c;   /* raw checks, and the client most registries are opened on */
  etcdreg_client_t *c2;  /* "someone else": revokes and deletes behind the registry's back */
  etcdreg_registry_t *regs[MAX_REGS];
} fx_t;

static int fx_setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  uv_loop_init(&f->loop);
  f->c = itest_client(&f->loop, g_etcd.endpoint, NULL);
  f->c2 = itest_client(&f->loop, g_etcd.endpoint, NULL);
  *state = f;
  return 0;
}

typedef struct {
  int done, calls, status;
  char message[300];
} open_res_t;

static void on_open(etcdreg_registry_t *reg, int status, const char *message, void *data) {
  (void)reg;
  open_res_t *o = data;
  o->done = 1;
  o->calls++;
  o->status = status;
  snprintf(o->message, sizeof(o->message), "%s", message ? message : "(null)");
}

static int g_reg_closed;
static void on_reg_closed(etcdreg_registry_t *reg, void *data) {
  (void)reg;
  (*(int *)data)++;
}

static void fx_forget(fx_t *f, etcdreg_registry_t *reg) {
  for (int i = 0; i < MAX_REGS; i++)
    if (f->regs[i] == reg) f->regs[i] = NULL;
}

static void fx_track(fx_t *f, etcdreg_registry_t *reg) {
  for (int i = 0; i < MAX_REGS; i++)
    if (!f->regs[i]) {
      f->regs[i] = reg;
      return;
    }
  fail_msg("too many registries");
}

/* Opens a registry on `c` (the fixture's client when NULL) and waits for the check. */
static etcdreg_registry_t *fx_open_on(fx_t *f, etcdreg_client_t *c, const char *base) {
  static open_res_t o;
  memset(&o, 0, sizeof(o));
  etcdreg_registry_t *reg = NULL;
  int rv = etcdreg_registry_open(c ? c : f->c, base, on_open, &o, &reg);
  if (rv) fail_msg("open %s: %s (%s)", base, etcdreg_strerror(rv), etcdreg_registry_last_error());
  assert_non_null(reg);
  fx_track(f, reg);
  WAIT_FOR(&f->loop, o.done, 15000);
  if (o.status) fail_msg("open %s: %s (%s)", base, etcdreg_strerror(o.status), o.message);
  return reg;
}

static etcdreg_registry_t *fx_open(fx_t *f, const char *base) { return fx_open_on(f, NULL, base); }

static void fx_close_reg(fx_t *f, etcdreg_registry_t *reg) {
  static int closed;
  closed = 0;
  fx_forget(f, reg);
  assert_int_equal(etcdreg_registry_close(reg, on_reg_closed, &closed), 0);
  WAIT_FOR(&f->loop, closed, 60000);
  assert_int_equal(closed, 1);
}

static int fx_teardown(void **state) {
  fx_t *f = *state;
  for (int i = 0; i < MAX_REGS; i++) {
    if (!f->regs[i]) continue;
    int closed = 0;
    if (etcdreg_registry_close(f->regs[i], on_reg_closed, &closed) == 0) {
      uint64_t t0 = now_ms();
      while (!closed && now_ms() - t0 < 30000) uv_run(&f->loop, UV_RUN_ONCE);
    }
    f->regs[i] = NULL;
  }
  int closed = 0;
  etcdreg_client_close(f->c2, itest_on_closed, &closed);
  itest_run_until(&f->loop, &closed, 15000);
  itest_close(&f->loop, f->c);
  free(f);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* raw KV helpers                                                                       */

/* Reads `key`; returns 1 and fills what is asked for when present, 0 when absent. */
static int raw_get(fx_t *f, const char *key, char *val, size_t vlen, int64_t *lease, int64_t *create_rev) {
  itest_result_t r = {0};
  itest_range(&f->loop, f->c, key, NULL, &r);
  if (r.status) fail_msg("range %s: %s (%s)", key, etcdreg_strerror(r.status), r.message);
  int present = r.kv_count == 1;
  if (present) {
    if (val) snprintf(val, vlen, "%s", r.kvs[0].value);
    if (lease) *lease = r.kvs[0].lease;
    if (create_rev) *create_rev = r.kvs[0].create_revision;
  }
  itest_result_reset(&r);
  return present;
}

static int64_t raw_count(fx_t *f, const char *prefix) {
  itest_result_t r = {0};
  etcdreg_range_opts_t o = {.prefix = 1, .count_only = 1};
  itest_range(&f->loop, f->c, prefix, &o, &r);
  if (r.status) fail_msg("count %s: %s", prefix, etcdreg_strerror(r.status));
  int64_t n = r.count;
  itest_result_reset(&r);
  return n;
}

static int64_t raw_put(fx_t *f, const char *key, const char *value) { return itest_put(&f->loop, f->c, key, value, NULL); }

static void raw_delete(fx_t *f, etcdreg_client_t *c, const char *key) {
  itest_result_t d = {0};
  assert_int_equal(etcdreg_delete(c, key, strlen(key), NULL, itest_on_delete, &d, NULL), 0);
  itest_run_until(&f->loop, &d.done, 15000);
  assert_int_equal(d.status, 0);
  itest_result_reset(&d);
}

/* Polls until the key is present (want=1) or absent (want=0); returns the ms it took. */
static uint64_t wait_key(fx_t *f, const char *key, int want, uint64_t timeout_ms) {
  uint64_t t0 = now_ms();
  for (;;) {
    if (raw_get(f, key, NULL, 0, NULL, NULL) == want) return now_ms() - t0;
    if (now_ms() - t0 > timeout_ms) fail_msg("key %s still %s after %llu ms", key, want ? "absent" : "present", (unsigned long long)timeout_ms);
    idle(&f->loop, 50);
  }
}

typedef struct {
  int done, status;
  int64_t ttl, granted;
} ttl_res_t;

static void on_ttl(etcdreg_request_t *req, int status, const etcdreg_lease_ttl_result_t *res, void *data) {
  (void)req;
  ttl_res_t *t = data;
  t->done = 1;
  t->status = status;
  if (!status) {
    t->ttl = res->ttl;
    t->granted = res->granted_ttl;
  }
}

/* TTL left on a lease (-1 when gone); *granted (may be NULL) the TTL it was granted with. */
static int64_t lease_ttl(fx_t *f, int64_t id, int64_t *granted) {
  ttl_res_t t = {0};
  assert_int_equal(etcdreg_lease_time_to_live(f->c, id, 0, 0, on_ttl, &t, NULL), 0);
  itest_run_until(&f->loop, &t.done, 15000);
  if (t.status == ETCDREG_ELEASENOTFOUND) return -1;
  if (t.status) fail_msg("time_to_live: %s", etcdreg_strerror(t.status));
  if (granted) *granted = t.granted;
  return t.ttl;
}

typedef struct {
  int done, status;
  char message[200];
} revoke_res_t;

static void on_revoke(etcdreg_request_t *req, int status, const etcdreg_lease_revoke_result_t *res, void *data) {
  (void)res;
  revoke_res_t *r = data;
  r->done = 1;
  r->status = status;
  snprintf(r->message, sizeof(r->message), "%s", etcdreg_request_message(req));
}

/* A write made "concurrently", synchronously, from inside a callback: its own loop and
 * client, run to completion before returning. */
static void side_put(const char *key, const char *value) {
  uv_loop_t l;
  uv_loop_init(&l);
  etcdreg_client_t *c = itest_client(&l, g_etcd.endpoint, NULL);
  itest_put(&l, c, key, value, NULL);
  itest_close(&l, c);
}

/* ------------------------------------------------------------------------------------ */
/* group results                                                                        */

typedef struct {
  int done, calls, status;
  char message[300];
  int has;
  char name[80], user[80], pass[80], labels[400];
  int64_t created_ns, mod_revision;
} gres_t;

static void on_group(etcdreg_registry_t *reg, int status, const etcdreg_group_t *g, const char *message, void *data) {
  (void)reg;
  gres_t *r = data;
  r->done = 1;
  r->calls++;
  r->status = status;
  snprintf(r->message, sizeof(r->message), "%s", message ? message : "(null)");
  r->has = g != NULL;
  if (status == 0 && !g) r->has = -1; /* success without a group: reported by the asserts */
  if (g) {
    snprintf(r->name, sizeof(r->name), "%s", g->name ? g->name : "(null)");
    snprintf(r->user, sizeof(r->user), "%s", g->spec.username ? g->spec.username : "(null)");
    snprintf(r->pass, sizeof(r->pass), "%s", g->spec.password ? g->spec.password : "(null)");
    labels_str(g->spec.common_labels, g->spec.common_label_count, r->labels, sizeof(r->labels));
    r->created_ns = g->created_ns;
    r->mod_revision = g->mod_revision;
  }
}

static void gwait(fx_t *f, gres_t *r) {
  WAIT_FOR(&f->loop, r->done, 20000);
  assert_int_equal(r->calls, 1);
}

static gres_t g_create(fx_t *f, etcdreg_registry_t *reg, const char *name) {
  static gres_t r;
  memset(&r, 0, sizeof(r));
  int rv = etcdreg_group_create_or_join(reg, name, on_group, &r);
  if (rv) fail_msg("create_or_join %s: %s (%s)", name, etcdreg_strerror(rv), etcdreg_registry_last_error());
  gwait(f, &r);
  if (r.status) fail_msg("create_or_join %s: %s (%s)", name, etcdreg_strerror(r.status), r.message);
  assert_int_equal(r.has, 1);
  return r;
}

static gres_t g_get(fx_t *f, etcdreg_registry_t *reg, const char *name) {
  static gres_t r;
  memset(&r, 0, sizeof(r));
  assert_int_equal(etcdreg_group_get(reg, name, on_group, &r), 0);
  gwait(f, &r);
  return r;
}

static gres_t g_configure(fx_t *f, etcdreg_registry_t *reg, const char *name, const etcdreg_group_spec_t *spec, int64_t rev) {
  static gres_t r;
  memset(&r, 0, sizeof(r));
  int rv = etcdreg_group_configure(reg, name, spec, rev, on_group, &r);
  if (rv) fail_msg("configure %s: %s (%s)", name, etcdreg_strerror(rv), etcdreg_registry_last_error());
  gwait(f, &r);
  return r;
}

typedef struct {
  int done, calls, status;
  char message[300];
} sres_t;

static void on_status(etcdreg_registry_t *reg, int status, const char *message, void *data) {
  (void)reg;
  sres_t *s = data;
  s->done = 1;
  s->calls++;
  s->status = status;
  snprintf(s->message, sizeof(s->message), "%s", message ? message : "(null)");
}

static void node_delete(fx_t *f, etcdreg_registry_t *reg, const char *group, const char *id, const char *exp) {
  static sres_t s;
  memset(&s, 0, sizeof(s));
  int rv = etcdreg_node_delete(reg, group, id, exp, on_status, &s);
  if (rv) fail_msg("node_delete: %s (%s)", etcdreg_strerror(rv), etcdreg_registry_last_error());
  WAIT_FOR(&f->loop, s.done, 20000);
  assert_int_equal(s.calls, 1);
  if (s.status) fail_msg("node_delete %s/%s_%s: %s (%s)", group, id, exp, etcdreg_strerror(s.status), s.message);
}

static void group_delete(fx_t *f, etcdreg_registry_t *reg, const char *group) {
  static sres_t s;
  memset(&s, 0, sizeof(s));
  assert_int_equal(etcdreg_group_delete(reg, group, on_status, &s), 0);
  WAIT_FOR(&f->loop, s.done, 20000);
  assert_int_equal(s.calls, 1);
  if (s.status) fail_msg("group_delete %s: %s (%s)", group, etcdreg_strerror(s.status), s.message);
}

/* ------------------------------------------------------------------------------------ */
/* nodes listing                                                                        */

#define MAX_NODES 16
typedef struct {
  char id[80], exporter[80], path[80], status[40], labels[400];
  int port;
  int64_t last_seen_ns;
} node_copy_t;

static void copy_node(node_copy_t *d, const etcdreg_node_t *n) {
  snprintf(d->id, sizeof(d->id), "%s", n->id ? n->id : "(null)");
  snprintf(d->exporter, sizeof(d->exporter), "%s", n->exporter_type ? n->exporter_type : "(null)");
  snprintf(d->path, sizeof(d->path), "%s", n->metrics_path ? n->metrics_path : "(null)");
  snprintf(d->status, sizeof(d->status), "%s", n->status ? n->status : "(null)");
  labels_str(n->labels, n->label_count, d->labels, sizeof(d->labels));
  d->port = n->port;
  d->last_seen_ns = n->last_seen_ns;
}

typedef struct {
  int done, calls, status;
  size_t count, skipped;
  node_copy_t nodes[MAX_NODES];
} nres_t;

static void on_nodes(etcdreg_registry_t *reg, int status, const etcdreg_node_t *nodes, size_t count, size_t skipped, void *data) {
  (void)reg;
  nres_t *r = data;
  r->done = 1;
  r->calls++;
  r->status = status;
  r->count = count;
  r->skipped = skipped;
  for (size_t i = 0; i < count && i < MAX_NODES; i++) copy_node(&r->nodes[i], &nodes[i]);
}

static nres_t *nodes_list(fx_t *f, etcdreg_registry_t *reg, const char *group) {
  static nres_t r;
  memset(&r, 0, sizeof(r));
  assert_int_equal(etcdreg_nodes_list(reg, group, on_nodes, &r), 0);
  WAIT_FOR(&f->loop, r.done, 20000);
  assert_int_equal(r.calls, 1);
  return &r;
}

/* ------------------------------------------------------------------------------------ */
/* registrations                                                                        */

typedef struct {
  int registered, errors, ended, ended_calls, end_status;
  uint64_t granted_ttl_ms;
  int last_err, last_attempt, max_attempt;
  uint64_t last_retry_in;
  char last_msg[400];
  int eexist, leaselost, leasenotfound;
  node_copy_t stored;
  etcdreg_registration_t *h;
  int stop_on_error;  /* call etcdreg_registration_stop from inside the error callback */
  int stop_in_registered; /* ... from inside the registered callback */
  int *ended_counter; /* optional shared counter */
  int closed_before_end; /* ended seen after the registry's close callback */
} rlog_t;

static void r_registered(etcdreg_registration_t *h, const etcdreg_node_t *n, uint64_t ttl_ms, void *data) {
  (void)h;
  rlog_t *l = data;
  l->registered++;
  l->granted_ttl_ms = ttl_ms;
  copy_node(&l->stored, n);
  if (l->stop_in_registered) etcdreg_registration_stop(h);
}

static void r_error(etcdreg_registration_t *h, int err, const char *msg, int attempt, uint64_t retry_in, void *data) {
  (void)h;
  rlog_t *l = data;
  l->errors++;
  l->last_err = err;
  l->last_attempt = attempt;
  if (attempt > l->max_attempt) l->max_attempt = attempt;
  l->last_retry_in = retry_in;
  snprintf(l->last_msg, sizeof(l->last_msg), "%s", msg ? msg : "(null)");
  if (err == ETCDREG_EEXIST) l->eexist++;
  if (err == ETCDREG_ELEASELOST) l->leaselost++;
  if (err == ETCDREG_ELEASENOTFOUND) l->leasenotfound++;
  if (l->stop_on_error) etcdreg_registration_stop(h);
}

static void r_ended(etcdreg_registration_t *h, int status, void *data) {
  (void)h;
  rlog_t *l = data;
  l->ended = 1;
  l->ended_calls++;
  l->end_status = status;
  if (l->ended_counter) (*l->ended_counter)++;
  if (g_reg_closed) l->closed_before_end++;
}

static const etcdreg_registration_cbs_t rcbs = {r_registered, r_error, r_ended};

static etcdreg_node_t mknode(const char *id, const char *exp, int port) {
  etcdreg_node_t n = {.id = id, .exporter_type = exp, .port = port, .metrics_path = "/metrics"};
  return n;
}

static void do_register(etcdreg_registry_t *reg, const char *group, const etcdreg_node_t *n, uint64_t ttl_ms,
                        const etcdreg_register_opts_t *opts, rlog_t *l) {
  int rv = etcdreg_register(reg, group, n, ttl_ms, opts, &rcbs, l, &l->h);
  if (rv) fail_msg("register %s_%s: %s (%s)", n->id, n->exporter_type, etcdreg_strerror(rv), etcdreg_registry_last_error());
}

static void stop_and_wait(fx_t *f, rlog_t *l) {
  etcdreg_registration_stop(l->h);
  assert_int_equal(l->ended_calls, 0); /* never from inside the call */
  WAIT_FOR(&f->loop, l->ended, 20000);
  assert_int_equal(l->ended_calls, 1);
  assert_int_equal(l->end_status, ETCDREG_ECANCELED);
}

/* ==================================================================================== */
/* 1. open                                                                              */

static void test_open_base_rules(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = (etcdreg_registry_t *)0x1;
  static open_res_t o;
  memset(&o, 0, sizeof(o));
  assert_int_equal(etcdreg_registry_open(f->c, "", on_open, &o, &reg), ETCDREG_EINVAL);
  assert_string_equal(etcdreg_registry_last_error(), "etcd base path cannot be empty");
  assert_int_equal(etcdreg_registry_open(f->c, "/", on_open, &o, &reg), ETCDREG_EINVAL);
  assert_string_equal(etcdreg_registry_last_error(), "etcd base path cannot be the root");
  assert_int_equal(etcdreg_registry_open(f->c, "//", on_open, &o, &reg), ETCDREG_EINVAL);
  assert_true(strlen(etcdreg_registry_last_error()) > 0);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(o.calls, 0); /* a refused call fires nothing */

  /* "//svc//x/" is cleaned like path.Join; keys land under "/svc/x/". */
  reg = fx_open(f, "//svc//x/");
  assert_string_equal(etcdreg_registry_base(reg), "/svc/x");
  assert_ptr_equal(etcdreg_registry_client(reg), f->c);
  gres_t g = g_create(f, reg, "g");
  (void)g;
  assert_true(raw_get(f, "/svc/x/g", NULL, 0, NULL, NULL));
  fx_close_reg(f, reg);
  /* the registry does not own this client: it still works */
  assert_true(raw_get(f, "/svc/x/g", NULL, 0, NULL, NULL));
}

static void no_retries(etcdreg_client_options_t *o) {
  o->max_retries = 0;
  o->dial_timeout_ms = 2000;
  o->request_timeout_ms = 4000;
}

static void test_open_unreachable(void **state) {
  fx_t *f = *state;
  char ep[64];
  snprintf(ep, sizeof(ep), "127.0.0.1:%d", th_closed_port());
  etcdreg_client_t *c = itest_client(&f->loop, ep, no_retries);
  static open_res_t o;
  memset(&o, 0, sizeof(o));
  etcdreg_registry_t *reg = NULL;
  assert_int_equal(etcdreg_registry_open(c, "/unreach", on_open, &o, &reg), 0);
  assert_non_null(reg);
  assert_int_equal(o.calls, 0);
  WAIT_FOR(&f->loop, o.done, 15000);
  assert_int_equal(o.calls, 1);
  assert_int_not_equal(o.status, 0);
  assert_true(strlen(o.message) > 0);
  /* on error the registry must still be closed */
  static int closed;
  closed = 0;
  assert_int_equal(etcdreg_registry_close(reg, on_reg_closed, &closed), 0);
  WAIT_FOR(&f->loop, closed, 15000);
  assert_int_equal(closed, 1);
  int cc = 0;
  etcdreg_client_close(c, itest_on_closed, &cc);
  itest_run_until(&f->loop, &cc, 15000);
}

/* etcdreg_registry_connect owns its client. */
static void test_connect_owns_client(void **state) {
  fx_t *f = *state;
  const char *eps[] = {g_etcd.endpoint, NULL};
  etcdreg_registry_options_t opt = {.endpoints = eps, .base = "/owned/", .default_timeout_ms = 5000, .max_retries = 2};
  static open_res_t o;
  memset(&o, 0, sizeof(o));
  etcdreg_registry_t *reg = NULL;
  assert_int_equal(etcdreg_registry_connect(&f->loop, &opt, on_open, &o, &reg), 0);
  fx_track(f, reg);
  WAIT_FOR(&f->loop, o.done, 15000);
  assert_int_equal(o.status, 0);
  assert_string_equal(etcdreg_registry_base(reg), "/owned");
  assert_non_null(etcdreg_registry_client(reg));
  assert_ptr_not_equal(etcdreg_registry_client(reg), f->c);
  g_create(f, reg, "x");
  assert_true(raw_get(f, "/owned/x", NULL, 0, NULL, NULL));
  fx_close_reg(f, reg); /* closes its client too; the loop must be clean (checked in teardown) */
  const char *none[] = {NULL};
  opt.endpoints = none;
  assert_int_equal(etcdreg_registry_connect(&f->loop, &opt, on_open, &o, &reg), ETCDREG_EINVAL);
  assert_true(strlen(etcdreg_registry_last_error()) > 0);
}

/* ==================================================================================== */
/* 2. groups                                                                            */

static void test_group_create_join_get(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tg1");
  int64_t t0 = wall_ns();
  gres_t c = g_create(f, reg, "g1");
  int64_t t1 = wall_ns();
  assert_string_equal(c.name, "g1");
  assert_string_equal(c.user, "");
  assert_string_equal(c.pass, "");
  assert_string_equal(c.labels, "");
  assert_true(c.created_ns >= t0 - 1000000000LL && c.created_ns <= t1 + 1000000000LL);
  /* the raw value: exactly what the Go library writes */
  char raw[1024], want[1024], ts[64];
  int64_t lease = -1, crev = 0;
  assert_true(raw_get(f, "/tg1/g1", raw, sizeof(raw), &lease, &crev));
  assert_int_equal(lease, 0); /* group config has no lease */
  fmt_time(c.created_ns, ts, sizeof(ts));
  snprintf(want, sizeof(want), "{\"name\":\"g1\",\"spec\":{\"username\":\"\",\"password\":\"\"},\"created\":\"%s\"}", ts);
  assert_string_equal(raw, want);
  assert_int_equal(c.mod_revision, crev);

  /* join: same created, nothing rewritten */
  gres_t j = g_create(f, reg, "g1");
  assert_int_equal(j.created_ns, c.created_ns);
  assert_int_equal(j.mod_revision, c.mod_revision);
  char raw2[1024];
  assert_true(raw_get(f, "/tg1/g1", raw2, sizeof(raw2), NULL, NULL));
  assert_string_equal(raw2, raw);

  /* get */
  gres_t g = g_get(f, reg, "g1");
  assert_int_equal(g.status, 0);
  assert_string_equal(g.name, "g1");
  assert_int_equal(g.created_ns, c.created_ns);
  assert_int_equal(g.mod_revision, c.mod_revision);
  g = g_get(f, reg, "x");
  assert_int_equal(g.status, ETCDREG_ENOTFOUND);
  assert_int_equal(g.has, 0);
  assert_string_equal(g.message, "group x not found");
  /* a stored value that is not JSON */
  raw_put(f, "/tg1/broken", "not json at all");
  g = g_get(f, reg, "broken");
  assert_int_equal(g.status, ETCDREG_EDECODE);
  assert_int_equal(g.has, 0);
  assert_true(strlen(g.message) > 0);
  fx_close_reg(f, reg);
}

static void test_group_configure(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tg2");
  gres_t c = g_create(f, reg, "g1");
  etcdreg_label_t labels[] = {{"region", "us"}, {"env", "prod"}, {"amp", "<&>"}};
  etcdreg_group_spec_t spec = {"gu", "gp", labels, 3};
  gres_t r = g_configure(f, reg, "g1", &spec, 0);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.has, 1);
  assert_string_equal(r.user, "gu");
  assert_string_equal(r.pass, "gp");
  assert_string_equal(r.labels, "amp=<&>,env=prod,region=us");
  assert_int_equal(r.created_ns, c.created_ns);
  assert_true(r.mod_revision > c.mod_revision);
  char raw[1024], want[1024], ts[64];
  int64_t crev = 0;
  assert_true(raw_get(f, "/tg2/g1", raw, sizeof(raw), NULL, &crev));
  fmt_time(c.created_ns, ts, sizeof(ts));
  snprintf(want, sizeof(want),
           "{\"name\":\"g1\",\"spec\":{\"username\":\"gu\",\"password\":\"gp\",\"common_labels\":{\"amp\":\"\\u003c\\u0026\\u003e\","
           "\"env\":\"prod\",\"region\":\"us\"}},\"created\":\"%s\"}",
           ts);
  assert_string_equal(raw, want);
  gres_t g = g_get(f, reg, "g1");
  assert_string_equal(g.labels, "amp=<&>,env=prod,region=us");
  assert_int_equal(g.mod_revision, r.mod_revision);

  /* replaces the whole spec: credentials gone, labels replaced, common_labels omitted when empty */
  etcdreg_group_spec_t spec2 = {NULL, NULL, NULL, 0};
  r = g_configure(f, reg, "g1", &spec2, g.mod_revision);
  assert_int_equal(r.status, 0);
  assert_true(raw_get(f, "/tg2/g1", raw, sizeof(raw), NULL, NULL));
  snprintf(want, sizeof(want), "{\"name\":\"g1\",\"spec\":{\"username\":\"\",\"password\":\"\"},\"created\":\"%s\"}", ts);
  assert_string_equal(raw, want);

  /* a stale expected revision is a conflict, and nothing is written */
  r = g_configure(f, reg, "g1", &spec, g.mod_revision);
  assert_int_equal(r.status, ETCDREG_ECONFLICT);
  assert_int_equal(r.has, 0);
  assert_string_equal(r.message, "concurrent modification detected, please retry");
  char raw3[1024];
  assert_true(raw_get(f, "/tg2/g1", raw3, sizeof(raw3), NULL, NULL));
  assert_string_equal(raw3, raw);

  /* a missing group */
  r = g_configure(f, reg, "nope", &spec, 0);
  assert_int_equal(r.status, ETCDREG_ENOTFOUND);
  assert_false(raw_get(f, "/tg2/nope", NULL, 0, NULL, NULL));

  /* CommonLabels validation, the Go messages */
  static gres_t dummy;
  etcdreg_label_t bad1[] = {{"", "v"}};
  etcdreg_group_spec_t s1 = {"", "", bad1, 1};
  assert_int_equal(etcdreg_group_configure(reg, "g1", &s1, 0, on_group, &dummy), ETCDREG_EINVAL);
  assert_string_equal(etcdreg_registry_last_error(), "empty label key not allowed in CommonLabels");
  etcdreg_label_t bad2[] = {{"k", ""}};
  etcdreg_group_spec_t s2 = {"", "", bad2, 1};
  assert_int_equal(etcdreg_group_configure(reg, "g1", &s2, 0, on_group, &dummy), ETCDREG_EINVAL);
  assert_string_equal(etcdreg_registry_last_error(), "empty label value not allowed for key \"k\" in CommonLabels");
  etcdreg_label_t bad3[] = {{"a=b", "v"}};
  etcdreg_group_spec_t s3 = {"", "", bad3, 1};
  assert_int_equal(etcdreg_group_configure(reg, "g1", &s3, 0, on_group, &dummy), ETCDREG_EINVAL);
  assert_string_equal(etcdreg_registry_last_error(), "label key cannot contain '=' in CommonLabels: \"a=b\"");
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(dummy.calls, 0);
  fx_close_reg(f, reg);
}

typedef struct {
  int calls;
  int intrude;       /* on the first call, change the group behind the update's back */
  int fail_with;     /* return this instead of writing */
  int bad_labels;
  char seen_user[80];
  etcdreg_label_t labels[2];
} upd_t;

static int update_fn(const etcdreg_group_t *cur, etcdreg_group_spec_t *spec, void *data) {
  upd_t *u = data;
  u->calls++;
  snprintf(u->seen_user, sizeof(u->seen_user), "%s", cur->spec.username ? cur->spec.username : "(null)");
  if (u->fail_with) return u->fail_with;
  if ((u->intrude == 1 && u->calls == 1) || u->intrude == 2) {
    char v[300];
    snprintf(v, sizeof(v), "{\"name\":\"g1\",\"spec\":{\"username\":\"intruder\",\"password\":\"\"},\"created\":\"2026-01-02T03:04:05Z\"}");
    side_put("/tg3/g1", v);
  }
  u->labels[0].key = u->bad_labels ? "x=y" : "team";
  u->labels[0].value = "blue";
  spec->common_labels = u->labels;
  spec->common_label_count = 1;
  return 0;
}

/* The update API passes one `data` to both the function and the callback; keep a struct
 * that starts with the group result so one pointer serves both. */
typedef struct {
  gres_t r;
  upd_t u;
} upd_ctx_t;

static int update_fn2(const etcdreg_group_t *cur, etcdreg_group_spec_t *spec, void *data) {
  return update_fn(cur, spec, &((upd_ctx_t *)data)->u);
}

static void run_update(fx_t *f, etcdreg_registry_t *reg, upd_ctx_t *x, int max_attempts) {
  memset(&x->r, 0, sizeof(x->r));
  int rv = etcdreg_group_update(reg, "g1", update_fn2, max_attempts, on_group, x);
  if (rv) fail_msg("update: %s (%s)", etcdreg_strerror(rv), etcdreg_registry_last_error());
  gwait(f, &x->r);
}

static void test_group_update(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tg3");
  gres_t c = g_create(f, reg, "g1");
  static upd_ctx_t x;

  /* plain: labels set, credentials kept */
  memset(&x, 0, sizeof(x));
  run_update(f, reg, &x, 0);
  assert_int_equal(x.r.status, 0);
  assert_int_equal(x.u.calls, 1);
  assert_string_equal(x.r.labels, "team=blue");
  assert_int_equal(x.r.created_ns, c.created_ns);
  char raw[1024];
  assert_true(raw_get(f, "/tg3/g1", raw, sizeof(raw), NULL, NULL));
  assert_non_null(strstr(raw, "\"common_labels\":{\"team\":\"blue\"}"));

  /* a concurrent change: read again, call the function again, then succeed */
  memset(&x, 0, sizeof(x));
  x.u.intrude = 1;
  run_update(f, reg, &x, 0);
  assert_int_equal(x.r.status, 0);
  assert_int_equal(x.u.calls, 2);
  assert_string_equal(x.u.seen_user, "intruder"); /* the second call saw the new value */
  assert_string_equal(x.r.user, "intruder");
  assert_string_equal(x.r.labels, "team=blue");

  /* bounded: one attempt only -> conflict */
  memset(&x, 0, sizeof(x));
  x.u.intrude = 1;
  run_update(f, reg, &x, 1);
  assert_int_equal(x.r.status, ETCDREG_ECONFLICT);
  assert_int_equal(x.u.calls, 1);
  assert_int_equal(x.r.has, 0);

  /* bounded: a change on every attempt -> exactly max_attempts calls, then conflict */
  memset(&x, 0, sizeof(x));
  x.u.intrude = 2;
  run_update(f, reg, &x, 3);
  assert_int_equal(x.r.status, ETCDREG_ECONFLICT);
  assert_int_equal(x.u.calls, 3);
  assert_string_equal(x.r.message, "concurrent modification detected, please retry");

  /* the function aborts: its code is passed on, nothing written */
  assert_true(raw_get(f, "/tg3/g1", raw, sizeof(raw), NULL, NULL));
  memset(&x, 0, sizeof(x));
  x.u.fail_with = ETCDREG_EPERM;
  run_update(f, reg, &x, 0);
  assert_int_equal(x.r.status, ETCDREG_EPERM);
  assert_int_equal(x.u.calls, 1);
  char raw2[1024];
  assert_true(raw_get(f, "/tg3/g1", raw2, sizeof(raw2), NULL, NULL));
  assert_string_equal(raw2, raw);

  /* the new spec is validated like configure */
  memset(&x, 0, sizeof(x));
  x.u.bad_labels = 1;
  run_update(f, reg, &x, 0);
  assert_int_equal(x.r.status, ETCDREG_EINVAL);
  assert_true(raw_get(f, "/tg3/g1", raw2, sizeof(raw2), NULL, NULL));
  assert_string_equal(raw2, raw);

  /* a missing group */
  memset(&x, 0, sizeof(x));
  x.r.done = 0;
  assert_int_equal(etcdreg_group_update(reg, "missing", update_fn2, 0, on_group, &x), 0);
  gwait(f, &x.r);
  assert_int_equal(x.r.status, ETCDREG_ENOTFOUND);
  assert_int_equal(x.u.calls, 0);
  fx_close_reg(f, reg);
}

typedef struct {
  int done, calls, status;
  size_t count;
  char names[16][80];
} lres_t;

static void on_list(etcdreg_registry_t *reg, int status, const char *const *names, size_t count, void *data) {
  (void)reg;
  lres_t *l = data;
  l->done = 1;
  l->calls++;
  l->status = status;
  l->count = count;
  for (size_t i = 0; i < count && i < 16; i++) snprintf(l->names[i], sizeof(l->names[i]), "%s", names[i]);
}

static void test_group_list_sorted(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tg4");
  g_create(f, reg, "zeta");
  g_create(f, reg, "alpha");
  g_create(f, reg, "grp2");
  g_create(f, reg, "grp");
  /* nodes and a prefix without config are not groups; neither is a sibling base */
  raw_put(f, "/tg4/grp/nodes/n_e", "{}");
  raw_put(f, "/tg4/orphan/nodes/n_e", "{}");
  raw_put(f, "/tg4x", "{}");
  raw_put(f, "/tg45/other", "{}");
  static lres_t l;
  memset(&l, 0, sizeof(l));
  assert_int_equal(etcdreg_group_list(reg, on_list, &l), 0);
  WAIT_FOR(&f->loop, l.done, 15000);
  assert_int_equal(l.calls, 1);
  assert_int_equal(l.status, 0);
  assert_int_equal(l.count, 4);
  assert_string_equal(l.names[0], "alpha");
  assert_string_equal(l.names[1], "grp");
  assert_string_equal(l.names[2], "grp2");
  assert_string_equal(l.names[3], "zeta");
  fx_close_reg(f, reg);
}

static void test_group_names_validated(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tg5");
  static gres_t r;
  memset(&r, 0, sizeof(r));
  char long64[65];
  memset(long64, 'x', 64);
  long64[64] = 0;
  char long63[64];
  memset(long63, 'y', 63);
  long63[63] = 0;
  const struct {
    const char *name, *msg;
  } bad[] = {
      {"", "group name cannot be empty"},
      {"a b", "invalid group name: must not contain spaces or special characters /\\?#[]"},
      {"a/b", "invalid group name: must not contain spaces or special characters /\\?#[]"},
      {"a?b", "invalid group name: must not contain spaces or special characters /\\?#[]"},
      {long64, "group name must be 63 characters or less"},
      {"a!b", "group name must contain only alphanumeric characters, hyphens and underscores"},
      {"..", "group name must contain only alphanumeric characters, hyphens and underscores"},
      {"grp\t", "group name must contain only alphanumeric characters, hyphens and underscores"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rv = etcdreg_group_create_or_join(reg, bad[i].name, on_group, &r);
    if (rv != ETCDREG_EINVAL) fail_msg("create_or_join(\"%s\") returned %d", bad[i].name, rv);
    if (strcmp(etcdreg_registry_last_error(), bad[i].msg))
      fail_msg("create_or_join(\"%s\"): message \"%s\", want \"%s\"", bad[i].name, etcdreg_registry_last_error(), bad[i].msg);
  }
  /* the same rule everywhere a group name is accepted */
  etcdreg_group_spec_t spec = {0};
  static sres_t s;
  static nres_t n;
  etcdreg_registry_watch_cbs_t wcbs = {0};
  etcdreg_node_t node = mknode("n", "e", 1);
  static rlog_t rl;
  assert_int_equal(etcdreg_group_get(reg, "a/b", on_group, &r), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_group_configure(reg, "a!b", &spec, 0, on_group, &r), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_group_update(reg, long64, update_fn2, 0, on_group, &r), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_group_delete(reg, "", on_status, &s), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_nodes_list(reg, "a b", on_nodes, &n), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_node_delete(reg, "x/y", "n", "e", on_status, &s), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_register(reg, "..", &node, 5000, NULL, &rcbs, &rl, NULL), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_registry_watch_group(reg, "g#", &wcbs, NULL, NULL), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_registry_watch_group_nodes(reg, "", &wcbs, NULL, NULL), ETCDREG_EINVAL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(r.calls, 0);
  assert_int_equal(s.calls, 0);
  assert_int_equal(n.calls, 0);
  assert_int_equal(rl.ended_calls, 0);
  assert_int_equal(raw_count(f, "/tg5/"), 0);
  /* accepted: 63 characters, '-', '_' */
  g_create(f, reg, long63);
  g_create(f, reg, "a-b_C9");
  fx_close_reg(f, reg);
}

static void test_group_delete_no_sibling(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tg6");
  g_create(f, reg, "grp");
  g_create(f, reg, "grp2");
  raw_put(f, "/tg6/grp/nodes/a_e", "{}");
  raw_put(f, "/tg6/grp/other/deeper", "x");
  raw_put(f, "/tg6/grp2/nodes/b_e", "{}");
  raw_put(f, "/tg6/grp-x", "y");
  group_delete(f, reg, "grp");
  assert_false(raw_get(f, "/tg6/grp", NULL, 0, NULL, NULL));
  assert_int_equal(raw_count(f, "/tg6/grp/"), 0);
  assert_true(raw_get(f, "/tg6/grp2", NULL, 0, NULL, NULL));
  assert_true(raw_get(f, "/tg6/grp2/nodes/b_e", NULL, 0, NULL, NULL));
  assert_true(raw_get(f, "/tg6/grp-x", NULL, 0, NULL, NULL));
  /* deleting a group that does not exist is fine */
  group_delete(f, reg, "grp");
  fx_close_reg(f, reg);
}

/* ==================================================================================== */
/* 3. data written by the Go library                                                    */

static int64_t unix_ns(int y, int mo, int d, int h, int mi, int s, long ns) {
  struct tm tm = {0};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return (int64_t)timegm(&tm) * 1000000000 + ns;
}

static void test_go_written_data(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tgo");
  /* a group and nodes as a Go service (local zone +01:00, field-name case variants,
   * unknown fields) writes them */
  raw_put(f, "/tgo/gogrp",
          "{\"Name\":\"gogrp\",\"SPEC\":{\"Username\":\"u\",\"password\":\"p\",\"Common_Labels\":{\"b\":\"2\",\"a\":\"1\"}},"
          "\"created\":\"2026-11-24T07:47:33.629110098+01:00\",\"future_field\":[1,{\"x\":null}]}");
  raw_put(f, "/tgo/gogrp/nodes/gonode_node_exporter",
          "{\"ID\":\"gonode\",\"Exporter_Type\":\"node_exporter\",\"Port\":9100,\"METRICS_PATH\":\"/metrics\","
          "\"labels\":{\"z\":\"1\",\"a\":\"2\",\"m\":\"\\u003c\"},\"status\":\"healthy\","
          "\"last_seen\":\"2026-11-24T07:47:33.63604489+01:00\",\"unknown\":{\"deep\":[true]}}");
  /* a node with null labels and a negative offset */
  raw_put(f, "/tgo/gogrp/nodes/n2_x",
          "{\"id\":\"n2\",\"exporter_type\":\"x\",\"port\":1,\"metrics_path\":\"m\",\"labels\":null,\"status\":\"unhealthy\","
          "\"last_seen\":\"2026-11-24T01:17:33-05:30\"}");
  /* undecodable: type mismatch, and not JSON */
  raw_put(f, "/tgo/gogrp/nodes/bad1_x", "{\"id\":\"bad1\",\"exporter_type\":\"x\",\"port\":\"9\"}");
  raw_put(f, "/tgo/gogrp/nodes/bad2_x", "not json");
  /* a sibling group's node is not listed */
  raw_put(f, "/tgo/gogrp2/nodes/sib_x", "{\"id\":\"sib\",\"exporter_type\":\"x\",\"port\":1,\"metrics_path\":\"m\"}");

  gres_t g = g_get(f, reg, "gogrp");
  assert_int_equal(g.status, 0);
  assert_string_equal(g.name, "gogrp");
  assert_string_equal(g.user, "u");
  assert_string_equal(g.pass, "p");
  assert_string_equal(g.labels, "a=1,b=2");
  assert_int_equal(g.created_ns, unix_ns(2026, 11, 24, 6, 47, 33, 629110098));
  /* joining it keeps it as it is */
  gres_t j = g_create(f, reg, "gogrp");
  assert_int_equal(j.created_ns, g.created_ns);
  assert_string_equal(j.labels, "a=1,b=2");

  nres_t *n = nodes_list(f, reg, "gogrp");
  assert_int_equal(n->status, 0);
  assert_int_equal(n->count, 2);
  assert_int_equal(n->skipped, 2);
  /* sorted by key: gonode_node_exporter < n2_x */
  assert_string_equal(n->nodes[0].id, "gonode");
  assert_string_equal(n->nodes[0].exporter, "node_exporter");
  assert_int_equal(n->nodes[0].port, 9100);
  assert_string_equal(n->nodes[0].path, "/metrics");
  assert_string_equal(n->nodes[0].labels, "a=2,m=<,z=1");
  assert_string_equal(n->nodes[0].status, "healthy");
  assert_int_equal(n->nodes[0].last_seen_ns, unix_ns(2026, 11, 24, 6, 47, 33, 636044890));
  assert_string_equal(n->nodes[1].id, "n2");
  assert_string_equal(n->nodes[1].labels, "");
  assert_string_equal(n->nodes[1].status, "unhealthy");
  assert_int_equal(n->nodes[1].last_seen_ns, unix_ns(2026, 11, 24, 6, 47, 33, 0));

  /* a node registered into the Go group inherits its common labels */
  static rlog_t l;
  memset(&l, 0, sizeof(l));
  etcdreg_label_t nl[] = {{"b", "mine"}};
  etcdreg_node_t node = mknode("c", "e", 80);
  node.labels = nl;
  node.label_count = 1;
  do_register(reg, "gogrp", &node, 5000, NULL, &l);
  WAIT_FOR(&f->loop, l.registered, 15000);
  assert_string_equal(l.stored.labels, "a=1,b=mine");
  stop_and_wait(f, &l);
  fx_close_reg(f, reg);
}

/* ==================================================================================== */
/* 4. register                                                                          */

static void test_register_raw_json_and_lease(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr1");
  g_create(f, reg, "g");
  etcdreg_label_t common[] = {{"zone", "a"}, {"region", "us"}, {"env", "prod"}};
  etcdreg_group_spec_t spec = {"", "", common, 3};
  assert_int_equal(g_configure(f, reg, "g", &spec, 0).status, 0);

  static rlog_t l;
  memset(&l, 0, sizeof(l));
  etcdreg_label_t nl[] = {{"zone", "b"}, {"html", "<&>"}, {"app", "x"}};
  etcdreg_node_t node = mknode("n1", "node_exporter", 9100);
  node.labels = nl;
  node.label_count = 3;
  node.status = "sick";   /* ignored: register stores "healthy" */
  node.last_seen_ns = 42; /* ignored: the registration time */
  int64_t t0 = wall_ns();
  do_register(reg, "g", &node, 1500, NULL, &l);
  /* copied: the caller's node may change at once */
  nl[0].value = "changed";
  assert_int_equal(l.registered, 0); /* never from inside the call */
  WAIT_FOR(&f->loop, l.registered, 15000);
  int64_t t1 = wall_ns();
  assert_int_equal(l.errors, 0);
  assert_int_equal(l.granted_ttl_ms, 2000); /* 1500 ms rounded up to 2 s */
  assert_string_equal(l.stored.id, "n1");
  assert_string_equal(l.stored.exporter, "node_exporter");
  assert_int_equal(l.stored.port, 9100);
  assert_string_equal(l.stored.path, "/metrics");
  assert_string_equal(l.stored.status, "healthy");
  assert_string_equal(l.stored.labels, "app=x,env=prod,html=<&>,region=us,zone=b");
  assert_true(l.stored.last_seen_ns >= t0 - 1000000000LL && l.stored.last_seen_ns <= t1);

  char raw[2048], want[2048], ts[64];
  int64_t lease = 0;
  assert_true(raw_get(f, "/tr1/g/nodes/n1_node_exporter", raw, sizeof(raw), &lease, NULL));
  fmt_time(l.stored.last_seen_ns, ts, sizeof(ts));
  snprintf(want, sizeof(want),
           "{\"id\":\"n1\",\"exporter_type\":\"node_exporter\",\"port\":9100,\"metrics_path\":\"/metrics\","
           "\"labels\":{\"app\":\"x\",\"env\":\"prod\",\"html\":\"\\u003c\\u0026\\u003e\",\"region\":\"us\",\"zone\":\"b\"},"
           "\"status\":\"healthy\",\"last_seen\":\"%s\"}",
           ts);
  assert_string_equal(raw, want);
  assert_true(lease != 0);
  int64_t granted = 0;
  int64_t left = lease_ttl(f, lease, &granted);
  assert_true(left > 0);
  assert_int_equal(granted, 2);

  /* no labels at all: {} */
  static rlog_t l2;
  memset(&l2, 0, sizeof(l2));
  etcdreg_node_t bare = mknode("bare", "e", 1);
  do_register(reg, "nogroup", &bare, 1000, NULL, &l2); /* the group need not exist */
  WAIT_FOR(&f->loop, l2.registered, 15000);
  assert_true(l2.granted_ttl_ms >= 2000); /* etcd's minimum */
  assert_true(raw_get(f, "/tr1/nogroup/nodes/bare_e", raw, sizeof(raw), NULL, NULL));
  assert_non_null(strstr(raw, "\"labels\":{},\"status\":\"healthy\""));

  /* the lease keeps the key past several TTLs */
  idle(&f->loop, 4500);
  assert_true(raw_get(f, "/tr1/g/nodes/n1_node_exporter", NULL, 0, NULL, NULL));
  assert_int_equal(l.errors, 0);
  assert_int_equal(l.registered, 1);

  /* stop: key deleted, lease revoked */
  stop_and_wait(f, &l);
  assert_false(raw_get(f, "/tr1/g/nodes/n1_node_exporter", NULL, 0, NULL, NULL));
  stop_and_wait(f, &l2);
  fx_close_reg(f, reg);
}

static void test_register_validation(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr2");
  static rlog_t l;
  memset(&l, 0, sizeof(l));
  etcdreg_label_t eq[] = {{"a=b", "v"}};
  etcdreg_label_t ev[] = {{"k", ""}};
  etcdreg_label_t ek[] = {{"", "v"}};
  etcdreg_label_t dup[] = {{"k", "1"}, {"k", "2"}};
  struct {
    etcdreg_node_t n;
    uint64_t ttl;
    const char *msg; /* exact (Go wording) or NULL: any non-empty message */
  } cases[] = {
      {{.id = "", .exporter_type = "e", .port = 1, .metrics_path = "/m"}, 5000, "node ID must be non empty"},
      {{.id = "n", .exporter_type = "", .port = 1, .metrics_path = "/m"}, 5000, "exporter type must be non empty"},
      {{.id = "a/b", .exporter_type = "e", .port = 1, .metrics_path = "/m"}, 5000, NULL},
      {{.id = "n", .exporter_type = "x/y", .port = 1, .metrics_path = "/m"}, 5000, NULL},
      {{.id = "..", .exporter_type = "e", .port = 1, .metrics_path = "/m"}, 5000, NULL},
      {{.id = "n", .exporter_type = ".", .port = 1, .metrics_path = "/m"}, 5000, NULL},
      {{.id = "n", .exporter_type = "e", .port = 0, .metrics_path = "/m"}, 5000, "port must be > 0"},
      {{.id = "n", .exporter_type = "e", .port = -3, .metrics_path = "/m"}, 5000, "port must be > 0"},
      {{.id = "n", .exporter_type = "e", .port = 70000, .metrics_path = "/m"}, 5000, NULL},
      {{.id = "n", .exporter_type = "e", .port = 1, .metrics_path = ""}, 5000, "metrics path must be non empty"},
      {{.id = "n", .exporter_type = "e", .port = 1, .metrics_path = "/m"}, 0, "ttl must be > 0"},
      {{.id = "n", .exporter_type = "e", .port = 1, .metrics_path = "/m", .labels = eq, .label_count = 1}, 5000,
       "label key cannot contain '=': a=b"},
      {{.id = "n", .exporter_type = "e", .port = 1, .metrics_path = "/m", .labels = ev, .label_count = 1}, 5000,
       "empty label value not allowed for key: k"},
      {{.id = "n", .exporter_type = "e", .port = 1, .metrics_path = "/m", .labels = ek, .label_count = 1}, 5000,
       "empty label key not allowed"},
      {{.id = "n", .exporter_type = "e", .port = 1, .metrics_path = "/m", .labels = dup, .label_count = 2}, 5000, NULL},
      {{.id = "n", .exporter_type = "e", .port = 1, .metrics_path = "/m"}, (uint64_t)1 << 62, NULL},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    etcdreg_registration_t *h = NULL;
    int rv = etcdreg_register(reg, "g", &cases[i].n, cases[i].ttl, NULL, &rcbs, &l, &h);
    if (rv != ETCDREG_EINVAL) fail_msg("case %zu: register returned %d, want EINVAL", i, rv);
    const char *m = etcdreg_registry_last_error();
    if (cases[i].msg ? strcmp(m, cases[i].msg) != 0 : m[0] == 0)
      fail_msg("case %zu: message \"%s\", want \"%s\"", i, m, cases[i].msg ? cases[i].msg : "(any)");
  }
  /* port 65535 and any metrics path are fine */
  etcdreg_node_t ok = {.id = "n", .exporter_type = "e", .port = 65535, .metrics_path = "m"};
  do_register(reg, "g", &ok, 5000, NULL, &l);
  WAIT_FOR(&f->loop, l.registered, 15000);
  assert_int_equal(l.errors, 0);
  stop_and_wait(f, &l);
  fx_close_reg(f, reg);
}

/* ==================================================================================== */
/* 5. two registrations on one key                                                      */

static const etcdreg_register_opts_t fast_retry = {.backoff_min_ms = 200, .backoff_max_ms = 500};

static void test_register_collision(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr3");
  static rlog_t a, b;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  const char *key = "/tr3/g/nodes/a_b_c";
  etcdreg_node_t na = mknode("a_b", "c", 1000);
  etcdreg_node_t nb = mknode("a", "b_c", 2000);
  do_register(reg, "g", &na, 5000, &fast_retry, &a);
  WAIT_FOR(&f->loop, a.registered, 15000);
  int64_t a_crev = 0;
  char raw[1024];
  assert_true(raw_get(f, key, raw, sizeof(raw), NULL, &a_crev));
  assert_non_null(strstr(raw, "\"id\":\"a_b\""));

  do_register(reg, "g", &nb, 5000, &fast_retry, &b);
  WAIT_FOR(&f->loop, b.eexist >= 3, 15000); /* keeps retrying, reporting each attempt */
  assert_int_equal(b.registered, 0);
  assert_int_equal(b.last_err, ETCDREG_EEXIST);
  assert_true(b.max_attempt >= 3);
  assert_true(b.last_retry_in >= 200 && b.last_retry_in <= 500);
  assert_true(strlen(b.last_msg) > 0);
  /* a's node untouched */
  int64_t crev = 0;
  assert_true(raw_get(f, key, raw, sizeof(raw), NULL, &crev));
  assert_int_equal(crev, a_crev);
  assert_non_null(strstr(raw, "\"id\":\"a_b\""));
  assert_int_equal(a.registered, 1);
  assert_int_equal(a.errors, 0);

  /* stopping the loser must not delete the winner's node (both registrations share one
   * lease here: the "still on our lease" check alone is not enough) */
  stop_and_wait(f, &b);
  idle(&f->loop, 300);
  crev = 0;
  int present = raw_get(f, key, raw, sizeof(raw), NULL, &crev);
  if (!present || crev != a_crev)
    fail_msg("stopping the colliding registration deleted the other node's key (present=%d, create_revision %lld -> %lld, "
             "a registered %d times)",
             present, (long long)a_crev, (long long)crev, a.registered);

  /* stopping the winner lets a new contender register */
  memset(&b, 0, sizeof(b));
  do_register(reg, "g", &nb, 5000, &fast_retry, &b);
  WAIT_FOR(&f->loop, b.eexist >= 1, 15000);
  stop_and_wait(f, &a);
  WAIT_FOR(&f->loop, b.registered, 15000);
  assert_true(raw_get(f, key, raw, sizeof(raw), NULL, NULL));
  assert_non_null(strstr(raw, "\"id\":\"a\",\"exporter_type\":\"b_c\""));
  stop_and_wait(f, &b);
  assert_false(raw_get(f, key, NULL, 0, NULL, NULL));
  fx_close_reg(f, reg);
}

/* Two registries (two processes, in effect): same scenario, no lease sharing. */
static void test_register_collision_two_registries(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *r1 = fx_open(f, "/tr3b");
  etcdreg_registry_t *r2 = fx_open_on(f, f->c2, "/tr3b");
  static rlog_t a, b;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  etcdreg_node_t na = mknode("a_b", "c", 1000);
  etcdreg_node_t nb = mknode("a", "b_c", 2000);
  do_register(r1, "g", &na, 5000, &fast_retry, &a);
  WAIT_FOR(&f->loop, a.registered, 15000);
  do_register(r2, "g", &nb, 5000, &fast_retry, &b);
  WAIT_FOR(&f->loop, b.eexist >= 2, 15000);
  stop_and_wait(f, &b);
  assert_true(raw_get(f, "/tr3b/g/nodes/a_b_c", NULL, 0, NULL, NULL));
  memset(&b, 0, sizeof(b));
  do_register(r2, "g", &nb, 5000, &fast_retry, &b);
  WAIT_FOR(&f->loop, b.eexist >= 1, 15000);
  stop_and_wait(f, &a);
  WAIT_FOR(&f->loop, b.registered, 15000);
  fx_close_reg(f, r2);
  assert_int_equal(b.ended_calls, 1);
  assert_int_equal(b.end_status, ETCDREG_ECLOSED);
  assert_false(raw_get(f, "/tr3b/g/nodes/a_b_c", NULL, 0, NULL, NULL));
  fx_close_reg(f, r1);
}

/* ==================================================================================== */
/* 6. lease revoked / key deleted behind the registry's back                            */

static void test_lease_revoked_behind_back(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr4");
  static rlog_t l;
  memset(&l, 0, sizeof(l));
  const char *key = "/tr4/g/nodes/n_e";
  etcdreg_node_t n = mknode("n", "e", 1);
  do_register(reg, "g", &n, 3000, NULL, &l);
  WAIT_FOR(&f->loop, l.registered, 15000);
  uint64_t ttl_ms = l.granted_ttl_ms;
  assert_int_equal(ttl_ms, 3000);
  int64_t lease1 = 0;
  assert_true(raw_get(f, key, NULL, 0, &lease1, NULL));

  static revoke_res_t rv;
  memset(&rv, 0, sizeof(rv));
  uint64_t t0 = now_ms();
  assert_int_equal(etcdreg_lease_revoke(f->c2, lease1, 0, on_revoke, &rv, NULL), 0);
  WAIT_FOR(&f->loop, rv.done, 15000);
  assert_int_equal(rv.status, 0);
  /* reported, then registered again */
  WAIT_FOR(&f->loop, l.registered >= 2, ttl_ms / 3 + 1000 + 4000);
  uint64_t took = now_ms() - t0;
  assert_true(l.leaselost + l.leasenotfound >= 1);
  assert_int_equal(l.max_attempt, 1); /* counted from 1 again after a success */
  int64_t lease2 = 0;
  int present = raw_get(f, key, NULL, 0, &lease2, NULL);
  assert_true(present);
  assert_true(lease2 != lease1);
  assert_true(lease_ttl(f, lease2, NULL) > 0);
  fprintf(stderr, "lease revoked: node back after %llu ms (errors: %d, last: %s)\n", (unsigned long long)took, l.errors,
          l.last_msg);
  assert_true(took <= ttl_ms / 3 + 1000 + 2000);
  /* and it stays */
  idle(&f->loop, ttl_ms + 500);
  assert_true(raw_get(f, key, NULL, 0, NULL, NULL));
  stop_and_wait(f, &l);
  assert_false(raw_get(f, key, NULL, 0, NULL, NULL));
  assert_int_equal(lease_ttl(f, lease2, NULL), -1);
  fx_close_reg(f, reg);
}

static void test_lease_revoked_by_etcdctl(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr4b");
  static rlog_t l;
  memset(&l, 0, sizeof(l));
  const char *key = "/tr4b/g/nodes/n_e";
  etcdreg_node_t n = mknode("n", "e", 1);
  do_register(reg, "g", &n, 3000, NULL, &l);
  WAIT_FOR(&f->loop, l.registered, 15000);
  int64_t lease1 = 0;
  assert_true(raw_get(f, key, NULL, 0, &lease1, NULL));
  char hex[32];
  snprintf(hex, sizeof(hex), "%llx", (unsigned long long)lease1);
  const char *args[] = {"lease", "revoke", hex, NULL};
  assert_int_equal(th_etcdctl(&g_etcd, args), 0);
  uint64_t t0 = now_ms();
  WAIT_FOR(&f->loop, l.registered >= 2, 1000 + 1000 + 4000);
  assert_true(now_ms() - t0 <= 1000 + 1000 + 2000);
  assert_true(l.errors >= 1);
  assert_true(l.last_err == ETCDREG_ELEASELOST || l.last_err == ETCDREG_ELEASENOTFOUND);
  int64_t lease2 = 0;
  assert_true(raw_get(f, key, NULL, 0, &lease2, NULL));
  assert_true(lease2 != lease1);
  /* the old lease's keepalive ended: a keepalive on a lease that no longer exists would
   * report ELEASELOST again; let a TTL pass and check no new error */
  int errs = l.errors;
  idle(&f->loop, 3500);
  assert_int_equal(l.errors, errs);
  assert_int_equal(l.registered, 2);
  fx_close_reg(f, reg);
  assert_int_equal(l.ended_calls, 1);
  assert_int_equal(l.end_status, ETCDREG_ECLOSED);
}

static void test_key_deleted_behind_back(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr5");
  static rlog_t l;
  memset(&l, 0, sizeof(l));
  const char *key = "/tr5/g/nodes/n_e";
  etcdreg_node_t n = mknode("n", "e", 1);
  do_register(reg, "g", &n, 6000, NULL, &l);
  WAIT_FOR(&f->loop, l.registered, 15000);
  int64_t lease1 = 0;
  char raw1[1024];
  assert_true(raw_get(f, key, raw1, sizeof(raw1), &lease1, NULL));
  for (int round = 0; round < 2; round++) {
    uint64_t t0 = now_ms();
    raw_delete(f, f->c2, key);
    uint64_t took = wait_key(f, key, 1, 6000 / 3 + 1000 + 4000);
    took = now_ms() - t0;
    fprintf(stderr, "key deleted: back after %llu ms\n", (unsigned long long)took);
    assert_true(took <= 6000 / 3 + 1000 + 2000);
    int64_t lease = 0;
    char raw[1024];
    assert_true(raw_get(f, key, raw, sizeof(raw), &lease, NULL));
    assert_int_equal(lease, lease1); /* the lease is fine: same one */
    assert_string_equal(raw, raw1);
  }
  WAIT_FOR(&f->loop, l.registered >= 3, 5000);
  /* the node was deleted and someone else put a different node there: not overwritten */
  raw_delete(f, f->c2, key);
  raw_put(f, key, "{\"id\":\"intruder\",\"exporter_type\":\"e\",\"port\":1,\"metrics_path\":\"/m\"}");
  idle(&f->loop, 1500);
  char raw[1024];
  assert_true(raw_get(f, key, raw, sizeof(raw), NULL, NULL));
  assert_non_null(strstr(raw, "intruder"));
  stop_and_wait(f, &l);
  /* stopping does not delete a key that is not on its lease */
  assert_true(raw_get(f, key, raw, sizeof(raw), NULL, NULL));
  assert_non_null(strstr(raw, "intruder"));
  fx_close_reg(f, reg);
}

/* ==================================================================================== */
/* 7. shared lease                                                                      */

static void test_shared_lease(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr6");
  static rlog_t l[3], other;
  memset(l, 0, sizeof(l));
  memset(&other, 0, sizeof(other));
  const char *ids[3] = {"n0", "n1", "n2"};
  char keys[3][64];
  for (int i = 0; i < 3; i++) {
    etcdreg_node_t n = mknode(ids[i], "e", 100 + i);
    do_register(reg, i == 2 ? "h" : "g", &n, 5000, NULL, &l[i]);
    snprintf(keys[i], sizeof(keys[i]), "/tr6/%s/nodes/%s_e", i == 2 ? "h" : "g", ids[i]);
  }
  /* a different TTL: a different lease */
  etcdreg_node_t on = mknode("o", "e", 1);
  do_register(reg, "g", &on, 7000, NULL, &other);
  WAIT_FOR(&f->loop, l[0].registered && l[1].registered && l[2].registered && other.registered, 15000);
  int64_t lease[3];
  for (int i = 0; i < 3; i++) assert_true(raw_get(f, keys[i], NULL, 0, &lease[i], NULL));
  assert_true(lease[0] != 0);
  assert_int_equal(lease[1], lease[0]);
  assert_int_equal(lease[2], lease[0]);
  int64_t olease = 0;
  assert_true(raw_get(f, "/tr6/g/nodes/o_e", NULL, 0, &olease, NULL));
  assert_true(olease != lease[0]);

  stop_and_wait(f, &l[0]);
  assert_false(raw_get(f, keys[0], NULL, 0, NULL, NULL));
  assert_true(raw_get(f, keys[1], NULL, 0, NULL, NULL));
  assert_true(raw_get(f, keys[2], NULL, 0, NULL, NULL));
  assert_true(lease_ttl(f, lease[0], NULL) > 0);
  /* the others stay alive past the TTL */
  idle(&f->loop, 5500);
  assert_true(raw_get(f, keys[1], NULL, 0, NULL, NULL));
  assert_true(raw_get(f, keys[2], NULL, 0, NULL, NULL));
  assert_int_equal(l[1].errors + l[2].errors, 0);
  assert_int_equal(l[1].registered, 1);

  stop_and_wait(f, &l[1]);
  assert_true(raw_get(f, keys[2], NULL, 0, NULL, NULL));
  assert_true(lease_ttl(f, lease[0], NULL) > 0);
  stop_and_wait(f, &l[2]);
  /* the last one: the lease is revoked soon */
  uint64_t t0 = now_ms();
  while (lease_ttl(f, lease[0], NULL) != -1) {
    if (now_ms() - t0 > 3000) fail_msg("the shared lease was not revoked after its last registration stopped");
    idle(&f->loop, 100);
  }
  assert_false(raw_get(f, keys[2], NULL, 0, NULL, NULL));
  /* the other TTL's lease is unaffected */
  assert_true(lease_ttl(f, olease, NULL) > 0);
  assert_true(raw_get(f, "/tr6/g/nodes/o_e", NULL, 0, NULL, NULL));
  fx_close_reg(f, reg);
  assert_int_equal(other.end_status, ETCDREG_ECLOSED);
  assert_int_equal(lease_ttl(f, olease, NULL), -1);
}

/* ==================================================================================== */
/* 8. 10 000 registrations on one lease                                                 */

typedef struct {
  int done, status;
  size_t n;
  int64_t first_lease;
  size_t other_leases, zero_leases;
} scan_t;

static void on_scan(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  (void)req;
  scan_t *s = data;
  s->done = 1;
  s->status = status;
  if (status) return;
  s->n = res->kv_count;
  for (size_t i = 0; i < res->kv_count; i++) {
    int64_t l = res->kvs[i].lease;
    if (!l) s->zero_leases++;
    else if (!s->first_lease) s->first_lease = l;
    else if (l != s->first_lease) s->other_leases++;
  }
}

static int g_many_ended;

static void test_10000_registrations_one_lease(void **state) {
  fx_t *f = *state;
  enum { N = 10000 };
  etcdreg_registry_t *reg = fx_open(f, "/tr7");
  g_create(f, reg, "many");
  rlog_t *l = calloc(N, sizeof(*l));
  g_many_ended = 0;
  g_reg_closed = 0;
  uint64_t t0 = now_ms();
  for (int i = 0; i < N; i++) {
    char id[16];
    snprintf(id, sizeof(id), "n%05d", i);
    etcdreg_node_t n = mknode(id, "e", 9100);
    l[i].ended_counter = &g_many_ended;
    do_register(reg, "many", &n, 10000, NULL, &l[i]);
  }
  int all = 0;
  uint64_t tw = now_ms();
  while (!all) {
    if (now_ms() - tw > 120000) fail_msg("registrations did not all complete");
    idle(&f->loop, 100);
    all = 1;
    for (int i = 0; i < N && all; i++) all = l[i].registered > 0;
  }
  fprintf(stderr, "10000 registrations in %llu ms\n", (unsigned long long)(now_ms() - t0));
  for (int i = 0; i < N; i++) assert_int_equal(l[i].errors, 0);
  static scan_t s;
  memset(&s, 0, sizeof(s));
  etcdreg_range_opts_t o = {.prefix = 1, .timeout_ms = 30000};
  assert_int_equal(etcdreg_range(f->c, "/tr7/many/nodes/", 16, &o, on_scan, &s, NULL), 0);
  WAIT_FOR(&f->loop, s.done, 30000);
  assert_int_equal(s.status, 0);
  assert_int_equal(s.n, N);
  assert_int_equal(s.zero_leases, 0);
  assert_int_equal(s.other_leases, 0); /* one lease for all */
  assert_true(lease_ttl(f, s.first_lease, NULL) > 0);

  /* close: every ended once, with ECLOSED, before the close callback; keys gone */
  static int closed;
  closed = 0;
  fx_forget(f, reg);
  assert_int_equal(etcdreg_registry_close(reg, on_reg_closed, &closed), 0);
  assert_int_equal(g_many_ended, 0);
  WAIT_FOR(&f->loop, closed, 120000);
  fprintf(stderr, "10000 registrations closed in %llu ms\n", (unsigned long long)(now_ms() - t0));
  assert_int_equal(g_many_ended, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(l[i].ended_calls, 1);
    assert_int_equal(l[i].end_status, ETCDREG_ECLOSED);
  }
  assert_int_equal(raw_count(f, "/tr7/many/nodes/"), 0);
  assert_int_equal(lease_ttl(f, s.first_lease, NULL), -1);
  free(l);
}

/* ==================================================================================== */
/* 9. empty-group cleanup                                                               */

static void test_empty_group_cleanup(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr8");
  g_create(f, reg, "grp");
  g_create(f, reg, "grp2");
  raw_put(f, "/tr8/grp/nodes/a_e", "{\"id\":\"a\",\"exporter_type\":\"e\",\"port\":1,\"metrics_path\":\"m\"}");
  raw_put(f, "/tr8/grp/nodes/b_e", "{\"id\":\"b\",\"exporter_type\":\"e\",\"port\":1,\"metrics_path\":\"m\"}");
  raw_put(f, "/tr8/grp2/nodes/c_e", "{\"id\":\"c\",\"exporter_type\":\"e\",\"port\":1,\"metrics_path\":\"m\"}");
  /* another node present: the group stays */
  node_delete(f, reg, "grp", "a", "e");
  assert_false(raw_get(f, "/tr8/grp/nodes/a_e", NULL, 0, NULL, NULL));
  assert_true(raw_get(f, "/tr8/grp", NULL, 0, NULL, NULL));
  /* idempotent */
  node_delete(f, reg, "grp", "a", "e");
  assert_true(raw_get(f, "/tr8/grp", NULL, 0, NULL, NULL));
  /* the last node: the group key goes, even though the sibling grp2 has nodes */
  node_delete(f, reg, "grp", "b", "e");
  assert_false(raw_get(f, "/tr8/grp", NULL, 0, NULL, NULL));
  assert_true(raw_get(f, "/tr8/grp2", NULL, 0, NULL, NULL));
  assert_true(raw_get(f, "/tr8/grp2/nodes/c_e", NULL, 0, NULL, NULL));
  /* cleanup of an empty grp never touches grp2 (no nodes in grp at all) */
  g_create(f, reg, "grp");
  node_delete(f, reg, "grp", "zz", "e");
  assert_false(raw_get(f, "/tr8/grp", NULL, 0, NULL, NULL));
  assert_true(raw_get(f, "/tr8/grp2", NULL, 0, NULL, NULL));
  assert_true(raw_get(f, "/tr8/grp2/nodes/c_e", NULL, 0, NULL, NULL));

  /* cleanup on stop: opt-in */
  g_create(f, reg, "cs");
  g_create(f, reg, "keep");
  static rlog_t a, b;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  etcdreg_register_opts_t cleanup = {.cleanup_empty_group = 1};
  etcdreg_node_t n = mknode("n", "e", 1);
  do_register(reg, "cs", &n, 5000, &cleanup, &a);
  do_register(reg, "keep", &n, 5000, NULL, &b);
  WAIT_FOR(&f->loop, a.registered && b.registered, 15000);
  stop_and_wait(f, &b);
  assert_true(raw_get(f, "/tr8/keep", NULL, 0, NULL, NULL)); /* off by default */
  stop_and_wait(f, &a);
  assert_false(raw_get(f, "/tr8/cs", NULL, 0, NULL, NULL));
  assert_false(raw_get(f, "/tr8/cs/nodes/n_e", NULL, 0, NULL, NULL));
  /* opt-in with another node left: the group stays */
  g_create(f, reg, "cs");
  raw_put(f, "/tr8/cs/nodes/other_e", "{}");
  memset(&a, 0, sizeof(a));
  do_register(reg, "cs", &n, 5000, &cleanup, &a);
  WAIT_FOR(&f->loop, a.registered, 15000);
  stop_and_wait(f, &a);
  assert_true(raw_get(f, "/tr8/cs", NULL, 0, NULL, NULL));
  fx_close_reg(f, reg);
}

/* ==================================================================================== */
/* 13. close with everything active                                                     */

typedef struct {
  int ready, ended, ended_calls, end_status;
  int after_close;
} wend_t;

static void we_ready(etcdreg_registry_watch_t *w, void *data) {
  (void)w;
  ((wend_t *)data)->ready++;
}
static void we_ended(etcdreg_registry_watch_t *w, int status, const char *msg, void *data) {
  (void)w;
  (void)msg;
  wend_t *e = data;
  e->ended = 1;
  e->ended_calls++;
  e->end_status = status;
  if (g_reg_closed) e->after_close++;
}

static void on_close_flag(etcdreg_registry_t *reg, void *data) {
  (void)reg;
  (void)data;
  g_reg_closed = 1;
}

static void test_close_with_everything_active(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr9");
  g_create(f, reg, "g");
  static rlog_t l[4];
  static wend_t w[3];
  memset(l, 0, sizeof(l));
  memset(w, 0, sizeof(w));
  g_reg_closed = 0;
  for (int i = 0; i < 3; i++) {
    char id[8];
    snprintf(id, sizeof(id), "n%d", i);
    etcdreg_node_t n = mknode(id, "e", 1);
    do_register(reg, "g", &n, i == 2 ? 9000 : 5000, NULL, &l[i]);
  }
  etcdreg_registry_watch_cbs_t wcbs = {we_ready, NULL, we_ended};
  assert_int_equal(etcdreg_registry_watch_services(reg, &wcbs, &w[0], NULL), 0);
  assert_int_equal(etcdreg_registry_watch_group(reg, "g", &wcbs, &w[1], NULL), 0);
  assert_int_equal(etcdreg_registry_watch_group_nodes(reg, "g", &wcbs, &w[2], NULL), 0);
  WAIT_FOR(&f->loop, l[0].registered && l[1].registered && l[2].registered && w[0].ready && w[1].ready && w[2].ready, 15000);
  /* one more registration still in flight when the registry closes */
  etcdreg_node_t n3 = mknode("n3", "e", 1);
  do_register(reg, "g", &n3, 5000, NULL, &l[3]);
  int64_t lease = 0;
  assert_true(raw_get(f, "/tr9/g/nodes/n0_e", NULL, 0, &lease, NULL));

  fx_forget(f, reg);
  assert_int_equal(etcdreg_registry_close(reg, on_close_flag, NULL), 0);
  /* nothing fires inside the call; every call now fails with ECLOSED */
  for (int i = 0; i < 4; i++) assert_int_equal(l[i].ended_calls, 0);
  for (int i = 0; i < 3; i++) assert_int_equal(w[i].ended_calls, 0);
  static gres_t gr;
  static sres_t sr;
  static nres_t nr;
  static lres_t lr;
  static rlog_t x;
  etcdreg_group_spec_t spec = {0};
  etcdreg_node_t nx = mknode("x", "e", 1);
  assert_int_equal(etcdreg_registry_close(reg, on_close_flag, NULL), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_group_create_or_join(reg, "g", on_group, &gr), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_group_get(reg, "g", on_group, &gr), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_group_configure(reg, "g", &spec, 0, on_group, &gr), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_group_update(reg, "g", update_fn2, 0, on_group, &gr), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_group_list(reg, on_list, &lr), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_group_delete(reg, "g", on_status, &sr), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_nodes_list(reg, "g", on_nodes, &nr), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_node_delete(reg, "g", "n0", "e", on_status, &sr), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_register(reg, "g", &nx, 5000, NULL, &rcbs, &x, NULL), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_registry_watch_services(reg, &wcbs, &w[0], NULL), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_registry_watch_group(reg, "g", &wcbs, &w[0], NULL), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_registry_watch_group_nodes(reg, "g", &wcbs, &w[0], NULL), ETCDREG_ECLOSED);
  WAIT_FOR(&f->loop, g_reg_closed, 30000);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(l[i].ended_calls, 1);
    assert_int_equal(l[i].end_status, ETCDREG_ECLOSED);
    assert_int_equal(l[i].closed_before_end, 0);
  }
  for (int i = 0; i < 3; i++) {
    assert_int_equal(w[i].ended_calls, 1);
    assert_int_equal(w[i].end_status, ETCDREG_ECLOSED);
    assert_int_equal(w[i].after_close, 0);
  }
  assert_int_equal(gr.calls + sr.calls + nr.calls + lr.calls + x.ended_calls, 0);
  /* deregistered: keys gone, leases revoked */
  assert_int_equal(raw_count(f, "/tr9/g/nodes/"), 0);
  assert_int_equal(lease_ttl(f, lease, NULL), -1);
  assert_true(raw_get(f, "/tr9/g", NULL, 0, NULL, NULL)); /* the group itself stays */
  idle(&f->loop, 200);
  for (int i = 0; i < 4; i++) assert_int_equal(l[i].ended_calls, 1);
}


/* Three registrations on one lease; the lease revoked elsewhere: all three come back, on
 * one new lease again. */
static void test_shared_lease_revoked(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr4c");
  static rlog_t l[3];
  memset(l, 0, sizeof(l));
  char keys[3][64];
  for (int i = 0; i < 3; i++) {
    char id[8];
    snprintf(id, sizeof(id), "n%d", i);
    etcdreg_node_t n = mknode(id, "e", 1);
    do_register(reg, "g", &n, 3000, NULL, &l[i]);
    snprintf(keys[i], sizeof(keys[i]), "/tr4c/g/nodes/n%d_e", i);
  }
  WAIT_FOR(&f->loop, l[0].registered && l[1].registered && l[2].registered, 15000);
  int64_t lease1 = 0;
  assert_true(raw_get(f, keys[0], NULL, 0, &lease1, NULL));
  static revoke_res_t rv;
  memset(&rv, 0, sizeof(rv));
  assert_int_equal(etcdreg_lease_revoke(f->c2, lease1, 0, on_revoke, &rv, NULL), 0);
  WAIT_FOR(&f->loop, rv.done, 15000);
  assert_int_equal(rv.status, 0);
  WAIT_FOR(&f->loop, l[0].registered >= 2 && l[1].registered >= 2 && l[2].registered >= 2, 1000 + 1000 + 4000);
  int64_t lease[3];
  for (int i = 0; i < 3; i++) {
    assert_true(raw_get(f, keys[i], NULL, 0, &lease[i], NULL));
    assert_true(lease[i] != lease1);
    assert_true(l[i].errors >= 1);
  }
  assert_int_equal(lease[1], lease[0]);
  assert_int_equal(lease[2], lease[0]);
  fx_close_reg(f, reg);
  assert_int_equal(raw_count(f, "/tr4c/g/nodes/"), 0);
  assert_int_equal(lease_ttl(f, lease[0], NULL), -1);
}

/* Stopping a registration before it ran, and from inside its own registered callback. */
static void test_stop_early_and_from_callbacks(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr10");
  static rlog_t a, b, c;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  memset(&c, 0, sizeof(c));
  etcdreg_node_t na = mknode("a", "e", 1), nb = mknode("b", "e", 1), nc = mknode("c", "e", 1);
  do_register(reg, "g", &na, 4000, NULL, &a);
  etcdreg_registration_stop(a.h); /* before the first attempt */
  etcdreg_registration_stop(a.h); /* twice: no-op */
  b.stop_in_registered = 1;
  do_register(reg, "g", &nb, 4000, NULL, &b);
  do_register(reg, "g", &nc, 4000, NULL, &c);
  WAIT_FOR(&f->loop, a.ended && b.ended && c.registered, 15000);
  assert_int_equal(a.ended_calls, 1);
  assert_int_equal(a.end_status, ETCDREG_ECANCELED);
  assert_int_equal(a.registered, 0);
  assert_int_equal(b.ended_calls, 1);
  assert_int_equal(b.end_status, ETCDREG_ECANCELED);
  assert_int_equal(b.registered, 1);
  idle(&f->loop, 200);
  assert_false(raw_get(f, "/tr10/g/nodes/a_e", NULL, 0, NULL, NULL));
  assert_false(raw_get(f, "/tr10/g/nodes/b_e", NULL, 0, NULL, NULL));
  assert_true(raw_get(f, "/tr10/g/nodes/c_e", NULL, 0, NULL, NULL));
  fx_close_reg(f, reg);
  assert_int_equal(c.ended_calls, 1);
  assert_int_equal(c.end_status, ETCDREG_ECLOSED);
}

static void sigcont_cb(uv_timer_t *t) {
  (void)t;
  th_etcd_kill(&g_etcd, SIGCONT);
}

/* etcd stops answering for longer than the TTL: the keepalive gives the lease up
 * (ELEASELOST), every registration on it is told and registers again once etcd answers. */
static void freeze_etcd(fx_t *f, uint64_t ms) {
  uv_timer_t t;
  uv_timer_init(&f->loop, &t);
  assert_int_equal(th_etcd_kill(&g_etcd, SIGSTOP), 0);
  uv_timer_start(&t, sigcont_cb, ms, 0);
  idle(&f->loop, ms + 50); /* the timer has fired: etcd runs again whatever happens next */
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
}

static void test_lease_lost_unanswered(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr11");
  static rlog_t l[2];
  memset(l, 0, sizeof(l));
  for (int i = 0; i < 2; i++) {
    char id[8];
    snprintf(id, sizeof(id), "n%d", i);
    etcdreg_node_t n = mknode(id, "e", 1);
    do_register(reg, "g", &n, 2000, NULL, &l[i]);
  }
  WAIT_FOR(&f->loop, l[0].registered && l[1].registered, 15000);
  int64_t lease1 = 0;
  assert_true(raw_get(f, "/tr11/g/nodes/n0_e", NULL, 0, &lease1, NULL));
  freeze_etcd(f, 3500);
  WAIT_FOR(&f->loop, l[0].registered >= 2 && l[1].registered >= 2, 15000);
  for (int i = 0; i < 2; i++) {
    assert_true(l[i].leaselost >= 1);
    assert_int_equal(l[i].ended_calls, 0);
  }
  idle(&f->loop, 2500); /* the old lease expires in etcd: the nodes stay */
  int64_t a = 0, b = 0;
  assert_true(raw_get(f, "/tr11/g/nodes/n0_e", NULL, 0, &a, NULL));
  assert_true(raw_get(f, "/tr11/g/nodes/n1_e", NULL, 0, &b, NULL));
  assert_true(a != lease1);
  assert_int_equal(a, b);
  fx_close_reg(f, reg);
}

/* The same, with a registration that stops itself from inside the error callback. */
static void test_lease_lost_stop_in_error_cb(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/tr12");
  static rlog_t l[3];
  memset(l, 0, sizeof(l));
  for (int i = 0; i < 3; i++) {
    char id[8];
    snprintf(id, sizeof(id), "n%d", i);
    etcdreg_node_t n = mknode(id, "e", 1);
    l[i].stop_on_error = i == 1;
    do_register(reg, "g", &n, 2000, NULL, &l[i]);
  }
  WAIT_FOR(&f->loop, l[0].registered && l[1].registered && l[2].registered, 15000);
  freeze_etcd(f, 3500);
  WAIT_FOR(&f->loop, l[1].ended && l[0].registered >= 2 && l[2].registered >= 2, 15000);
  assert_int_equal(l[1].ended_calls, 1);
  assert_int_equal(l[1].end_status, ETCDREG_ECANCELED);
  wait_key(f, "/tr12/g/nodes/n1_e", 0, 5000);
  assert_true(raw_get(f, "/tr12/g/nodes/n0_e", NULL, 0, NULL, NULL));
  assert_true(raw_get(f, "/tr12/g/nodes/n2_e", NULL, 0, NULL, NULL));
  fx_close_reg(f, reg);
  assert_int_equal(l[1].ended_calls, 1);
}

/* ==================================================================================== */
/* RBAC: a user whose role covers only the base works (nothing is read outside it).     */

static int rbac_up(void **state) {
  (void)state;
  th_etcd_stop(&g_etcd);
  if (th_etcd_start(&g_etcd, NULL) != 0) return -1;
  const char *steps[][12] = {
      {"user", "add", "root:rootpw", NULL},
      {"auth", "enable", NULL},
      {"--user", "root:rootpw", "user", "add", "svc:svcpw", NULL},
      {"--user", "root:rootpw", "role", "add", "svc-rw", NULL},
      {"--user", "root:rootpw", "role", "grant-permission", "svc-rw", "readwrite", "/rbac/svc", "--prefix=true", NULL},
      {"--user", "root:rootpw", "user", "grant-role", "svc", "svc-rw", NULL},
  };
  for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
    if (th_etcdctl(&g_etcd, steps[i]) != 0) return -1;
  return 0;
}

static void test_rbac_limited_to_base(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *eps[] = {g_etcd.endpoint, NULL};
  etcdreg_registry_options_t opt = {.endpoints = eps, .base = "/rbac/svc", .username = "svc", .password = "svcpw"};
  static open_res_t o;
  memset(&o, 0, sizeof(o));
  etcdreg_registry_t *reg = NULL;
  assert_int_equal(etcdreg_registry_connect(&loop, &opt, on_open, &o, &reg), 0);
  WAIT_FOR(&loop, o.done, 15000);
  if (o.status) fail_msg("open under RBAC: %s (%s)", etcdreg_strerror(o.status), o.message);
  static gres_t g;
  memset(&g, 0, sizeof(g));
  assert_int_equal(etcdreg_group_create_or_join(reg, "g", on_group, &g), 0);
  WAIT_FOR(&loop, g.done, 15000);
  assert_int_equal(g.status, 0);
  static rlog_t l;
  memset(&l, 0, sizeof(l));
  etcdreg_node_t n = mknode("n", "e", 1);
  do_register(reg, "g", &n, 3000, NULL, &l);
  static wend_t w;
  memset(&w, 0, sizeof(w));
  etcdreg_registry_watch_cbs_t wcbs = {we_ready, NULL, we_ended};
  assert_int_equal(etcdreg_registry_watch_services(reg, &wcbs, &w, NULL), 0);
  WAIT_FOR(&loop, l.registered && w.ready, 15000);
  static nres_t nr;
  memset(&nr, 0, sizeof(nr));
  assert_int_equal(etcdreg_nodes_list(reg, "g", on_nodes, &nr), 0);
  WAIT_FOR(&loop, nr.done, 15000);
  assert_int_equal(nr.status, 0);
  assert_int_equal(nr.count, 1);
  static lres_t lr;
  memset(&lr, 0, sizeof(lr));
  assert_int_equal(etcdreg_group_list(reg, on_list, &lr), 0);
  WAIT_FOR(&loop, lr.done, 15000);
  assert_int_equal(lr.status, 0);
  assert_int_equal(lr.count, 1);
  /* outside the role: refused */
  etcdreg_registry_t *other = NULL;
  static open_res_t o2;
  memset(&o2, 0, sizeof(o2));
  assert_int_equal(etcdreg_registry_open(etcdreg_registry_client(reg), "/elsewhere", on_open, &o2, &other), 0);
  WAIT_FOR(&loop, o2.done, 15000);
  assert_int_equal(o2.status, ETCDREG_EPERM);
  static int closed2;
  closed2 = 0;
  assert_int_equal(etcdreg_registry_close(other, on_reg_closed, &closed2), 0);
  WAIT_FOR(&loop, closed2, 15000);
  static int closed;
  closed = 0;
  assert_int_equal(etcdreg_registry_close(reg, on_reg_closed, &closed), 0);
  WAIT_FOR(&loop, closed, 30000);
  assert_int_equal(l.end_status, ETCDREG_ECLOSED);
  assert_int_equal(w.ended_calls, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ==================================================================================== */

/* etcd unreachable: every failed attempt is reported with its number and the next delay
 * (clamped to the options, growing), then the node registers once etcd is back. */
static void quick_fail(etcdreg_client_options_t *o) {
  o->max_retries = 0;
  o->request_timeout_ms = 1500;
  o->dial_timeout_ms = 1000;
  o->backoff_initial_ms = 50;
  o->backoff_max_ms = 200;
}

static void proxy_closed(void *data) { *(int *)data = 1; }

typedef struct {
  int n;
  int attempts[32];
  uint64_t delays[32];
} attempts_t;
static attempts_t g_att;

static void r_error_rec(etcdreg_registration_t *h, int err, const char *msg, int attempt, uint64_t retry_in, void *data) {
  r_error(h, err, msg, attempt, retry_in, data);
  if (g_att.n < 32) {
    g_att.attempts[g_att.n] = attempt;
    g_att.delays[g_att.n] = retry_in;
    g_att.n++;
  }
}

static void test_register_while_unreachable(void **state) {
  fx_t *f = *state;
  tproxy_t *p;
  assert_int_equal(tproxy_start(&f->loop, g_etcd.client_port, &p), 0);
  char ep[64];
  tproxy_endpoint(p, ep, sizeof(ep));
  etcdreg_client_t *pc = itest_client(&f->loop, ep, quick_fail);
  etcdreg_registry_t *reg = fx_open_on(f, pc, "/tr13");
  tproxy_set_refuse(p, 1);
  tproxy_cut(p);
  static rlog_t l;
  memset(&l, 0, sizeof(l));
  memset(&g_att, 0, sizeof(g_att));
  etcdreg_registration_cbs_t cbs = {r_registered, r_error_rec, r_ended};
  etcdreg_register_opts_t o = {.backoff_min_ms = 200, .backoff_max_ms = 800};
  etcdreg_node_t n = mknode("n", "e", 1);
  assert_int_equal(etcdreg_register(reg, "g", &n, 3000, &o, &cbs, &l, &l.h), 0);
  WAIT_FOR(&f->loop, l.errors >= 4, 30000);
  assert_int_equal(l.registered, 0);
  for (int i = 0; i < g_att.n; i++) {
    assert_int_equal(g_att.attempts[i], i + 1);
    if (g_att.delays[i] < 200 || g_att.delays[i] > 800)
      fail_msg("attempt %d: next in %llu ms, outside [200, 800]", i + 1, (unsigned long long)g_att.delays[i]);
  }
  assert_true(g_att.delays[3] > g_att.delays[0]); /* it grows (800 clamp vs 200 +-20 %) */
  tproxy_set_refuse(p, 0);
  WAIT_FOR(&f->loop, l.registered, 15000);
  assert_true(raw_get(f, "/tr13/g/nodes/n_e", NULL, 0, NULL, NULL));
  fx_close_reg(f, reg);
  assert_false(raw_get(f, "/tr13/g/nodes/n_e", NULL, 0, NULL, NULL));
  int cc = 0;
  etcdreg_client_close(pc, itest_on_closed, &cc);
  itest_run_until(&f->loop, &cc, 15000);
  int pd = 0;
  tproxy_close(p, proxy_closed, &pd);
  itest_run_until(&f->loop, &pd, 10000);
}

/* Close right after open, and with an operation in flight: each callback once, the close
 * callback last. */
static int g_order[8], g_order_n;
static void on_open_order(etcdreg_registry_t *reg, int status, const char *message, void *data) {
  on_open(reg, status, message, data);
  g_order[g_order_n++] = 1;
}
static void on_group_order(etcdreg_registry_t *reg, int status, const etcdreg_group_t *g, const char *message, void *data) {
  on_group(reg, status, g, message, data);
  g_order[g_order_n++] = 2;
}
static void on_close_order(etcdreg_registry_t *reg, void *data) {
  on_reg_closed(reg, data);
  g_order[g_order_n++] = 3;
}

static void test_close_early(void **state) {
  fx_t *f = *state;
  static open_res_t o;
  static int closed;
  memset(&o, 0, sizeof(o));
  closed = 0;
  g_order_n = 0;
  etcdreg_registry_t *reg = NULL;
  assert_int_equal(etcdreg_registry_open(f->c, "/tr14", on_open_order, &o, &reg), 0);
  assert_int_equal(etcdreg_registry_close(reg, on_close_order, &closed), 0);
  WAIT_FOR(&f->loop, closed, 15000);
  assert_int_equal(o.calls, 1);
  assert_int_equal(closed, 1);
  assert_int_equal(g_order_n, 2);
  assert_int_equal(g_order[0], 1);
  assert_int_equal(g_order[1], 3);

  reg = fx_open(f, "/tr14");
  static gres_t g;
  memset(&g, 0, sizeof(g));
  closed = 0;
  g_order_n = 0;
  assert_int_equal(etcdreg_group_create_or_join(reg, "g", on_group_order, &g), 0);
  fx_forget(f, reg);
  assert_int_equal(etcdreg_registry_close(reg, on_close_order, &closed), 0);
  WAIT_FOR(&f->loop, closed, 15000);
  idle(&f->loop, 100);
  assert_int_equal(g.calls, 1);
  assert_int_equal(g_order_n, 2);
  assert_int_equal(g_order[0], 2);
  assert_int_equal(g_order[1], 3);
}

/* ==================================================================================== */
/* etcd out of space: reads work, lease grants are refused. Every failed attempt is
 * reported (ENOSPACE); a registration may stop itself from its error callback; once space
 * is freed the others register.                                                         */

static int nospace_up(void **state) {
  (void)state;
  th_etcd_stop(&g_etcd);
  const char *flags[] = {"--quota-backend-bytes", "1048576", NULL};
  return th_etcd_start(&g_etcd, flags) == 0 ? 0 : -1;
}

static void test_grant_refused_no_space(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open(f, "/ns");
  g_create(f, reg, "g");
  /* fill the backend past its quota: etcd raises the NOSPACE alarm */
  size_t big = 300 * 1024;
  char *v = malloc(big + 1);
  memset(v, 'x', big);
  v[big] = 0;
  int full = 0;
  char statuses[600] = "";
  for (int i = 0; i < 40 && !full; i++) {
    char k[32];
    snprintf(k, sizeof(k), "/fill/%02d", i);
    itest_result_t r = {0};
    assert_int_equal(etcdreg_put(f->c, k, strlen(k), v, big, NULL, itest_on_put, &r, NULL), 0);
    itest_run_until(&f->loop, &r.done, 15000);
    full = r.status == ETCDREG_ENOSPACE;
    if (i >= 2) idle(&f->loop, 150); /* the quota is checked against the committed size (100 ms batches) */
    if (r.status && strlen(statuses) < 400)
      snprintf(statuses + strlen(statuses), sizeof(statuses) - strlen(statuses), " %d:%s(%s)", i, etcdreg_err_name(r.status), r.message);
    itest_result_reset(&r);
  }
  free(v);
  if (!full) fail_msg("the NOSPACE alarm was not raised:%s", statuses);
  static rlog_t a, b;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  b.stop_on_error = 1;
  etcdreg_register_opts_t o = {.backoff_min_ms = 200, .backoff_max_ms = 400};
  etcdreg_node_t na = mknode("a", "e", 1), nb = mknode("b", "e", 1);
  do_register(reg, "g", &na, 3000, &o, &a);
  do_register(reg, "g", &nb, 3000, &o, &b);
  WAIT_FOR(&f->loop, a.errors >= 2 && b.ended, 15000);
  assert_int_equal(a.last_err, ETCDREG_ENOSPACE);
  assert_int_equal(a.registered, 0);
  assert_int_equal(b.errors, 1);
  assert_int_equal(b.ended_calls, 1);
  assert_int_equal(b.end_status, ETCDREG_ECANCELED);
  /* free the space: delete, compact, defragment, disarm */
  itest_result_t d = {0};
  etcdreg_delete_opts_t all = {.prefix = 1};
  assert_int_equal(etcdreg_delete(f->c, "/fill/", 6, &all, itest_on_delete, &d, NULL), 0);
  itest_run_until(&f->loop, &d.done, 15000);
  assert_int_equal(d.status, 0);
  char rev[32];
  snprintf(rev, sizeof(rev), "%lld", (long long)d.revision);
  itest_result_reset(&d);
  const char *compact[] = {"compact", rev, "--physical", NULL};
  const char *defrag[] = {"defrag", NULL};
  const char *disarm[] = {"alarm", "disarm", NULL};
  assert_int_equal(th_etcdctl(&g_etcd, compact), 0);
  assert_int_equal(th_etcdctl(&g_etcd, defrag), 0);
  assert_int_equal(th_etcdctl(&g_etcd, disarm), 0);
  WAIT_FOR(&f->loop, a.registered, 15000);
  assert_true(raw_get(f, "/ns/g/nodes/a_e", NULL, 0, NULL, NULL));
  assert_false(raw_get(f, "/ns/g/nodes/b_e", NULL, 0, NULL, NULL));
  fx_close_reg(f, reg);
  assert_int_equal(a.end_status, ETCDREG_ECLOSED);
  assert_int_equal(b.ended_calls, 1);
}

/* Whether ITEST_FILTER (a glob, as cmocka reads it) selects a test of the group: a group
 * with nothing to run does not start its etcd. */
static int group_selected(const struct CMUnitTest *t, size_t n) {
  const char *pat = getenv("ITEST_FILTER");
  if (!pat) return 1;
  for (size_t i = 0; i < n; i++)
    if (fnmatch(pat, t[i].name, 0) == 0) return 1;
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_open_base_rules, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_open_unreachable, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_connect_owns_client, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_group_create_join_get, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_group_configure, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_group_update, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_group_list_sorted, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_group_names_validated, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_group_delete_no_sibling, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_go_written_data, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_register_raw_json_and_lease, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_register_validation, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_register_collision, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_register_collision_two_registries, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_lease_revoked_behind_back, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_lease_revoked_by_etcdctl, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_key_deleted_behind_back, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_shared_lease, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_10000_registrations_one_lease, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_empty_group_cleanup, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_close_with_everything_active, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_shared_lease_revoked, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_register_while_unreachable, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_close_early, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_stop_early_and_from_callbacks, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_lease_lost_unanswered, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_lease_lost_stop_in_error_cb, fx_setup, fx_teardown),
  };
  const struct CMUnitTest rbac[] = {
      cmocka_unit_test(test_rbac_limited_to_base),
  };
  const struct CMUnitTest nospace[] = {
      cmocka_unit_test_setup_teardown(test_grant_refused_no_space, fx_setup, fx_teardown),
  };
  if (getenv("ITEST_FILTER")) cmocka_set_test_filter(getenv("ITEST_FILTER"));
  int failed = 0;
  if (group_selected(rbac, sizeof(rbac) / sizeof(rbac[0])))
    failed += cmocka_run_group_tests_name("registry_rbac", rbac, rbac_up, itest_etcd_down);
  if (group_selected(tests, sizeof(tests) / sizeof(tests[0])))
    failed += cmocka_run_group_tests_name("registry", tests, itest_etcd_up, itest_etcd_down);
  if (group_selected(nospace, sizeof(nospace) / sizeof(nospace[0])))
    failed += cmocka_run_group_tests_name("registry_nospace", nospace, nospace_up, itest_etcd_down);
  return failed;
}
