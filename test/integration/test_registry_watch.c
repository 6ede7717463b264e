/* Registry watches against a real etcd: services / group / group-nodes events with the
 * group name and the node or group config (deletes carry the object as it was), sibling
 * groups never seen, ready once established, cancel; an etcd restart (registrations come
 * back, watches resume without loss); a compaction while the watcher was disconnected
 * (the watch re-reads and reports the differences, then carries on). */
#include <signal.h>
#include <time.h>

#include "itest.h"
#include "tproxy.h"

/* ------------------------------------------------------------------------------------ */
/* helpers (the same conventions as test_registry.c)                                    */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void tick_cb(uv_timer_t *t) { (void)t; }

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

static void labels_str(const etcdreg_label_t *l, size_t n, char *buf, size_t len) {
  buf[0] = 0;
  size_t off = 0;
  for (size_t i = 0; i < n && off < len; i++)
    off += (size_t)snprintf(buf + off, len - off, "%s%s=%s", i ? "," : "", l[i].key, l[i].value);
}

#define MAX_REGS 4
typedef struct {
  uv_loop_t loop;
  etcdreg_client_t *c;
  etcdreg_registry_t *regs[MAX_REGS];
} fx_t;

static int fx_setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  uv_loop_init(&f->loop);
  f->c = itest_client(&f->loop, g_etcd.endpoint, NULL);
  *state = f;
  return 0;
}

typedef struct {
  int done, status;
  char message[300];
} open_res_t;

static void on_open(etcdreg_registry_t *reg, int status, const char *message, void *data) {
  (void)reg;
  open_res_t *o = data;
  o->done = 1;
  o->status = status;
  snprintf(o->message, sizeof(o->message), "%s", message ? message : "(null)");
}

static void on_reg_closed(etcdreg_registry_t *reg, void *data) {
  (void)reg;
  (*(int *)data)++;
}

static void fx_forget(fx_t *f, etcdreg_registry_t *reg) {
  for (int i = 0; i < MAX_REGS; i++)
    if (f->regs[i] == reg) f->regs[i] = NULL;
}

static etcdreg_registry_t *fx_open_on(fx_t *f, etcdreg_client_t *c, const char *base) {
  static open_res_t o;
  memset(&o, 0, sizeof(o));
  etcdreg_registry_t *reg = NULL;
  int rv = etcdreg_registry_open(c ? c : f->c, base, on_open, &o, &reg);
  if (rv) fail_msg("open %s: %s (%s)", base, etcdreg_strerror(rv), etcdreg_registry_last_error());
  int i = 0;
  while (i < MAX_REGS && f->regs[i]) i++;
  assert_true(i < MAX_REGS);
  f->regs[i] = reg;
  WAIT_FOR(&f->loop, o.done, 15000);
  if (o.status) fail_msg("open %s: %s (%s)", base, etcdreg_strerror(o.status), o.message);
  return reg;
}

static void fx_close_reg(fx_t *f, etcdreg_registry_t *reg) {
  static int closed;
  closed = 0;
  fx_forget(f, reg);
  assert_int_equal(etcdreg_registry_close(reg, on_reg_closed, &closed), 0);
  WAIT_FOR(&f->loop, closed, 60000);
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
  }
  itest_close(&f->loop, f->c);
  free(f);
  return 0;
}

static int raw_get(fx_t *f, const char *key, int64_t *lease) {
  itest_result_t r = {0};
  itest_range(&f->loop, f->c, key, NULL, &r);
  if (r.status) fail_msg("range %s: %s (%s)", key, etcdreg_strerror(r.status), r.message);
  int present = r.kv_count == 1;
  if (present && lease) *lease = r.kvs[0].lease;
  itest_result_reset(&r);
  return present;
}

static int64_t raw_put(fx_t *f, const char *key, const char *value) { return itest_put(&f->loop, f->c, key, value, NULL); }

static int64_t raw_delete(fx_t *f, const char *key) {
  itest_result_t d = {0};
  assert_int_equal(etcdreg_delete(f->c, key, strlen(key), NULL, itest_on_delete, &d, NULL), 0);
  itest_run_until(&f->loop, &d.done, 15000);
  assert_int_equal(d.status, 0);
  int64_t rev = d.revision;
  itest_result_reset(&d);
  return rev;
}

static void node_json(char *buf, size_t len, const char *id, int port, const char *labels_json) {
  snprintf(buf, len,
           "{\"id\":\"%s\",\"exporter_type\":\"e\",\"port\":%d,\"metrics_path\":\"/metrics\",\"labels\":%s,"
           "\"status\":\"healthy\",\"last_seen\":\"2026-01-01T00:00:00Z\"}",
           id, port, labels_json);
}

static void put_node(fx_t *f, const char *base, const char *group, const char *id, int port, const char *labels_json) {
  char key[200], val[600];
  snprintf(key, sizeof(key), "%s/%s/nodes/%s_e", base, group, id);
  node_json(val, sizeof(val), id, port, labels_json);
  raw_put(f, key, val);
}

typedef struct {
  int done, calls, status;
  char message[300];
} res_t;

static void on_group(etcdreg_registry_t *reg, int status, const etcdreg_group_t *g, const char *message, void *data) {
  (void)reg;
  (void)g;
  res_t *r = data;
  r->done = 1;
  r->calls++;
  r->status = status;
  snprintf(r->message, sizeof(r->message), "%s", message ? message : "");
}

static void on_status(etcdreg_registry_t *reg, int status, const char *message, void *data) {
  (void)reg;
  res_t *r = data;
  r->done = 1;
  r->calls++;
  r->status = status;
  snprintf(r->message, sizeof(r->message), "%s", message ? message : "");
}

static void g_create(fx_t *f, etcdreg_registry_t *reg, const char *name) {
  static res_t r;
  memset(&r, 0, sizeof(r));
  assert_int_equal(etcdreg_group_create_or_join(reg, name, on_group, &r), 0);
  WAIT_FOR(&f->loop, r.done, 15000);
  if (r.status) fail_msg("create %s: %s (%s)", name, etcdreg_strerror(r.status), r.message);
}

static void g_configure(fx_t *f, etcdreg_registry_t *reg, const char *name, const etcdreg_label_t *l, size_t n) {
  static res_t r;
  memset(&r, 0, sizeof(r));
  etcdreg_group_spec_t spec = {"", "", l, n};
  assert_int_equal(etcdreg_group_configure(reg, name, &spec, 0, on_group, &r), 0);
  WAIT_FOR(&f->loop, r.done, 15000);
  if (r.status) fail_msg("configure %s: %s (%s)", name, etcdreg_strerror(r.status), r.message);
}

static void g_delete(fx_t *f, etcdreg_registry_t *reg, const char *name) {
  static res_t r;
  memset(&r, 0, sizeof(r));
  assert_int_equal(etcdreg_group_delete(reg, name, on_status, &r), 0);
  WAIT_FOR(&f->loop, r.done, 15000);
  if (r.status) fail_msg("delete %s: %s (%s)", name, etcdreg_strerror(r.status), r.message);
}

/* registrations */
typedef struct {
  int registered, errors, ended, ended_calls, end_status, last_err;
  char last_msg[300];
  etcdreg_registration_t *h;
} rlog_t;

static void r_registered(etcdreg_registration_t *h, const etcdreg_node_t *n, uint64_t ttl_ms, void *data) {
  (void)h;
  (void)n;
  (void)ttl_ms;
  ((rlog_t *)data)->registered++;
}
static void r_error(etcdreg_registration_t *h, int err, const char *msg, int attempt, uint64_t retry_in, void *data) {
  (void)h;
  (void)attempt;
  (void)retry_in;
  rlog_t *l = data;
  l->errors++;
  l->last_err = err;
  snprintf(l->last_msg, sizeof(l->last_msg), "%s", msg);
}
static void r_ended(etcdreg_registration_t *h, int status, void *data) {
  (void)h;
  rlog_t *l = data;
  l->ended = 1;
  l->ended_calls++;
  l->end_status = status;
}
static const etcdreg_registration_cbs_t rcbs = {r_registered, r_error, r_ended};

/* ------------------------------------------------------------------------------------ */
/* watch log                                                                            */

#define MAX_EV 256
typedef struct {
  int64_t revision;
  char desc[400];
} wev_t;

typedef struct wlog {
  int ready, ready_calls;
  int ended, ended_calls, end_status;
  char end_msg[200];
  int bad; /* events with missing fields */
  wev_t ev[MAX_EV];
  size_t n;
  void (*ready_hook)(struct wlog *l);
  etcdreg_registry_t *reg;
  etcdreg_client_t *client;
  etcdreg_registry_watch_t *h;
} wlog_t;

static void w_ready(etcdreg_registry_watch_t *w, void *data) {
  (void)w;
  wlog_t *l = data;
  l->ready = 1;
  l->ready_calls++;
  if (l->ready_hook) l->ready_hook(l);
}

/* "<type> <group> node <id>_<exp> port=<p> labels=<k=v,...>" or
 * "<type> <group> cfg <name> user=<u> labels=<k=v,...>" */
static void w_event(etcdreg_registry_watch_t *w, const etcdreg_event_t *ev, void *data) {
  (void)w;
  wlog_t *l = data;
  if (l->n == MAX_EV) {
    l->bad++;
    return;
  }
  wev_t *e = &l->ev[l->n++];
  e->revision = ev->revision;
  char labels[300];
  const char *type = etcdreg_reg_event_type_name(ev->type);
  if (!ev->group) l->bad++;
  if (ev->node && !ev->group_config) {
    labels_str(ev->node->labels, ev->node->label_count, labels, sizeof(labels));
    snprintf(e->desc, sizeof(e->desc), "%s %s node %s_%s port=%d labels=%s", type, ev->group ? ev->group : "(null)",
             ev->node->id, ev->node->exporter_type, ev->node->port, labels);
  } else if (ev->group_config && !ev->node) {
    const etcdreg_group_t *g = ev->group_config;
    labels_str(g->spec.common_labels, g->spec.common_label_count, labels, sizeof(labels));
    snprintf(e->desc, sizeof(e->desc), "%s %s cfg %s user=%s labels=%s", type, ev->group ? ev->group : "(null)", g->name,
             g->spec.username, labels);
  } else {
    l->bad++;
    snprintf(e->desc, sizeof(e->desc), "%s %s ??? node=%p cfg=%p", type, ev->group ? ev->group : "(null)", (void *)ev->node,
             (void *)ev->group_config);
  }
}

static void w_ended(etcdreg_registry_watch_t *w, int status, const char *msg, void *data) {
  (void)w;
  wlog_t *l = data;
  l->ended = 1;
  l->ended_calls++;
  l->end_status = status;
  snprintf(l->end_msg, sizeof(l->end_msg), "%s", msg ? msg : "(null)");
}

static const etcdreg_registry_watch_cbs_t wcbs = {w_ready, w_event, w_ended};

static int cmp_ev(const void *a, const void *b) {
  const wev_t *x = a, *y = b;
  if (x->revision != y->revision) return x->revision < y->revision ? -1 : 1;
  return strcmp(x->desc, y->desc);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static void dump(const char *name, const wlog_t *l) {
  fprintf(stderr, "  %s: %zu events\n", name, l->n);
  for (size_t i = 0; i < l->n; i++) fprintf(stderr, "    [%lld] %s\n", (long long)l->ev[i].revision, l->ev[i].desc);
}

/* Events from index `from` on, in revision order (ties by text), must be exactly `want`. */
static void expect_events(const char *name, wlog_t *l, size_t from, const char *const *want, size_t nwant, int sorted_by_text) {
  size_t n = l->n - from;
  wev_t *copy = calloc(n ? n : 1, sizeof(wev_t));
  memcpy(copy, l->ev + from, n * sizeof(wev_t));
  const char **got = calloc(n ? n : 1, sizeof(char *));
  const char **w = calloc(nwant ? nwant : 1, sizeof(char *));
  if (!sorted_by_text) {
    /* revision order must already hold */
    for (size_t i = 1; i < n; i++)
      if (copy[i].revision < copy[i - 1].revision) {
        dump(name, l);
        fail_msg("%s: events out of revision order at %zu", name, from + i);
      }
    qsort(copy, n, sizeof(wev_t), cmp_ev);
  }
  for (size_t i = 0; i < n; i++) got[i] = copy[i].desc;
  memcpy(w, want, nwant * sizeof(char *));
  if (sorted_by_text) {
    qsort(got, n, sizeof(char *), cmp_str);
    qsort(w, nwant, sizeof(char *), cmp_str);
  }
  int ok = n == nwant;
  for (size_t i = 0; ok && i < n; i++) ok = strcmp(got[i], w[i]) == 0;
  if (!ok) {
    fprintf(stderr, "%s: want %zu events:\n", name, nwant);
    for (size_t i = 0; i < nwant; i++) fprintf(stderr, "    %s\n", w[i]);
    fprintf(stderr, "got %zu:\n", n);
    for (size_t i = 0; i < n; i++) fprintf(stderr, "    %s\n", got[i]);
    free(copy);
    free(got);
    free(w);
    fail_msg("%s: events differ", name);
  }
  free(copy);
  free(got);
  free(w);
  assert_int_equal(l->bad, 0);
}

/* ==================================================================================== */
/* 10. events                                                                           */

static void test_watch_events(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open_on(f, NULL, "/rw1");
  static wlog_t S, G, N, G2;
  memset(&S, 0, sizeof(S));
  memset(&G, 0, sizeof(G));
  memset(&N, 0, sizeof(N));
  memset(&G2, 0, sizeof(G2));
  assert_int_equal(etcdreg_registry_watch_services(reg, &wcbs, &S, &S.h), 0);
  assert_int_equal(etcdreg_registry_watch_group(reg, "grp", &wcbs, &G, &G.h), 0);
  assert_int_equal(etcdreg_registry_watch_group_nodes(reg, "grp", &wcbs, &N, &N.h), 0);
  assert_int_equal(etcdreg_registry_watch_group(reg, "grp2", &wcbs, &G2, &G2.h), 0);
  assert_int_equal(S.ready_calls, 0); /* never from inside the call */
  WAIT_FOR(&f->loop, S.ready && G.ready && N.ready && G2.ready, 15000);

  g_create(f, reg, "grp");                                  /* create grp cfg */
  g_create(f, reg, "grp2");                                 /* create grp2 cfg */
  put_node(f, "/rw1", "grp", "n1", 9100, "{\"a\":\"1\"}");   /* create grp node */
  put_node(f, "/rw1", "grp2", "m1", 1, "{}");               /* create grp2 node */
  put_node(f, "/rw1", "grp", "n1", 9200, "{\"a\":\"1\"}");   /* update grp node */
  etcdreg_label_t env[] = {{"env", "prod"}};
  g_configure(f, reg, "grp", env, 1);                       /* update grp cfg */
  /* a registration: its node carries the group's common labels */
  static rlog_t rl;
  memset(&rl, 0, sizeof(rl));
  etcdreg_node_t rn = {.id = "r1", .exporter_type = "e", .port = 7, .metrics_path = "/m"};
  assert_int_equal(etcdreg_register(reg, "grp", &rn, 5000, NULL, &rcbs, &rl, &rl.h), 0);
  WAIT_FOR(&f->loop, rl.registered, 15000);
  etcdreg_registration_stop(rl.h);
  WAIT_FOR(&f->loop, rl.ended, 15000);
  /* noise that is not a registry object, or not decodable, or elsewhere: no events */
  raw_put(f, "/rw1/grp/other/x", "1");
  raw_put(f, "/rw1/grp/nodes/sub/deep_e", "{}");
  raw_put(f, "/rw1/grp/nodes/bad_e", "not json");
  raw_put(f, "/rw1x/grp", "{}");
  raw_put(f, "/rw1/bad name", "{}");
  raw_delete(f, "/rw1/grp/nodes/n1_e");                     /* delete grp node, as it was */
  g_delete(f, reg, "grp2");                                 /* delete grp2 cfg + node */
  g_delete(f, reg, "grp");                                  /* delete grp cfg (+ the noise under it) */

  const char *want_s[] = {
      "create grp cfg grp user= labels=",
      "create grp2 cfg grp2 user= labels=",
      "create grp node n1_e port=9100 labels=a=1",
      "create grp2 node m1_e port=1 labels=",
      "update grp node n1_e port=9200 labels=a=1",
      "update grp cfg grp user= labels=env=prod",
      "create grp node r1_e port=7 labels=env=prod",
      "delete grp node r1_e port=7 labels=env=prod",
      "delete grp node n1_e port=9200 labels=a=1",
      "delete grp2 cfg grp2 user= labels=",
      "delete grp2 node m1_e port=1 labels=",
      "delete grp cfg grp user= labels=env=prod",
  };
  const char *want_g[] = {
      "create grp cfg grp user= labels=",
      "create grp node n1_e port=9100 labels=a=1",
      "update grp node n1_e port=9200 labels=a=1",
      "update grp cfg grp user= labels=env=prod",
      "create grp node r1_e port=7 labels=env=prod",
      "delete grp node r1_e port=7 labels=env=prod",
      "delete grp node n1_e port=9200 labels=a=1",
      "delete grp cfg grp user= labels=env=prod",
  };
  const char *want_n[] = {
      "create grp node n1_e port=9100 labels=a=1",
      "update grp node n1_e port=9200 labels=a=1",
      "create grp node r1_e port=7 labels=env=prod",
      "delete grp node r1_e port=7 labels=env=prod",
      "delete grp node n1_e port=9200 labels=a=1",
  };
  const char *want_g2[] = {
      "create grp2 cfg grp2 user= labels=",
      "create grp2 node m1_e port=1 labels=",
      "delete grp2 cfg grp2 user= labels=",
      "delete grp2 node m1_e port=1 labels=",
  };
  size_t ns = sizeof(want_s) / sizeof(want_s[0]), ng = sizeof(want_g) / sizeof(want_g[0]);
  size_t nn = sizeof(want_n) / sizeof(want_n[0]), ng2 = sizeof(want_g2) / sizeof(want_g2[0]);
  uint64_t t0 = now_ms();
  while ((S.n < ns || G.n < ng || N.n < nn || G2.n < ng2) && now_ms() - t0 < 15000) idle(&f->loop, 50);
  idle(&f->loop, 300); /* anything extra would show up now */
  expect_events("services", &S, 0, want_s, ns, 0);
  expect_events("group grp", &G, 0, want_g, ng, 0);
  expect_events("group nodes grp", &N, 0, want_n, nn, 0);
  expect_events("group grp2", &G2, 0, want_g2, ng2, 0);
  /* the config events' revisions are the writes' revisions: strictly increasing in S */
  for (size_t i = 1; i < S.n; i++) assert_true(S.ev[i].revision >= S.ev[i - 1].revision);

  /* cancel: ended once with ECANCELED, later, and nothing after */
  etcdreg_registry_watch_cancel(S.h);
  etcdreg_registry_watch_cancel(S.h);
  assert_int_equal(S.ended_calls, 0);
  WAIT_FOR(&f->loop, S.ended, 15000);
  assert_int_equal(S.end_status, ETCDREG_ECANCELED);
  size_t before = S.n;
  g_create(f, reg, "late");
  WAIT_FOR(&f->loop, G.n == ng && N.n == nn, 1000); /* (no-op wait: unchanged) */
  idle(&f->loop, 300);
  assert_int_equal(S.n, before);
  assert_int_equal(S.ended_calls, 1);
  fx_close_reg(f, reg);
  assert_int_equal(S.ended_calls, 1);
  assert_int_equal(S.ready_calls, 1);
  wlog_t *others[] = {&G, &N, &G2};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(others[i]->ready_calls, 1);
    assert_int_equal(others[i]->ended_calls, 1);
    assert_int_equal(others[i]->end_status, ETCDREG_ECLOSED);
  }
}

/* A write issued from inside the ready callback is never missed. */
static void put_done(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  (void)req;
  (void)res;
  *(int *)data = status ? -1 : 1;
}

static int g_early_put;
static void put_from_ready2(wlog_t *l) {
  const char *k = "/rw2/g/nodes/early_e";
  char v[400];
  node_json(v, sizeof(v), "early", 5, "{}");
  assert_int_equal(etcdreg_put(l->client, k, strlen(k), v, strlen(v), NULL, put_done, &g_early_put, NULL), 0);
}

static void test_watch_ready_then_no_loss(void **state) {
  fx_t *f = *state;
  etcdreg_registry_t *reg = fx_open_on(f, NULL, "/rw2");
  /* existing state is the starting point: it is not reported as events */
  put_node(f, "/rw2", "g", "old", 1, "{}");
  static wlog_t N, G;
  memset(&N, 0, sizeof(N));
  memset(&G, 0, sizeof(G));
  g_early_put = 0;
  N.client = f->c;
  N.ready_hook = put_from_ready2;
  assert_int_equal(etcdreg_registry_watch_group_nodes(reg, "g", &wcbs, &N, &N.h), 0);
  assert_int_equal(etcdreg_registry_watch_group(reg, "g", &wcbs, &G, &G.h), 0);
  WAIT_FOR(&f->loop, N.ready && G.ready && g_early_put, 15000);
  assert_int_equal(g_early_put, 1);
  WAIT_FOR(&f->loop, N.n >= 1, 10000);
  idle(&f->loop, 300);
  const char *want[] = {"create g node early_e port=5 labels="};
  expect_events("nodes g", &N, 0, want, 1, 0);
  /* the group watch may or may not have been ready before that write; afterwards it sees
   * everything */
  size_t g0 = G.n;
  raw_delete(f, "/rw2/g/nodes/old_e");
  WAIT_FOR(&f->loop, N.n >= 2 && G.n >= g0 + 1, 10000);
  const char *want2[] = {"delete g node old_e port=1 labels="};
  expect_events("nodes g", &N, 1, want2, 1, 0);
  expect_events("group g", &G, g0, want2, 1, 0);
  etcdreg_registry_watch_cancel(N.h);
  WAIT_FOR(&f->loop, N.ended, 10000);
  assert_int_equal(N.end_status, ETCDREG_ECANCELED);
  fx_close_reg(f, reg);
  assert_int_equal(N.ended_calls, 1);
  assert_int_equal(G.ended_calls, 1);
  assert_int_equal(G.end_status, ETCDREG_ECLOSED);
}

/* ==================================================================================== */
/* 11. etcd restarted                                                                   */

static void fast_reconnect(etcdreg_client_options_t *o) {
  o->backoff_initial_ms = 100;
  o->backoff_max_ms = 1000;
}

static size_t count_desc(const wlog_t *l, const char *desc) {
  size_t n = 0;
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->ev[i].desc, desc) == 0) n++;
  return n;
}

static void test_etcd_restart(void **state) {
  fx_t *f = *state;
  etcdreg_client_t *rc = itest_client(&f->loop, g_etcd.endpoint, fast_reconnect);
  etcdreg_registry_t *reg = fx_open_on(f, rc, "/rw3");
  static wlog_t N;
  static rlog_t rl;
  memset(&N, 0, sizeof(N));
  memset(&rl, 0, sizeof(rl));
  assert_int_equal(etcdreg_registry_watch_group_nodes(reg, "g", &wcbs, &N, &N.h), 0);
  etcdreg_node_t rn = {.id = "reg", .exporter_type = "e", .port = 1, .metrics_path = "/m"};
  assert_int_equal(etcdreg_register(reg, "g", &rn, 3000, NULL, &rcbs, &rl, &rl.h), 0);
  WAIT_FOR(&f->loop, N.ready && rl.registered, 15000);
  put_node(f, "/rw3", "g", "a", 1, "{}");
  WAIT_FOR(&f->loop, count_desc(&N, "create g node a_e port=1 labels=") == 1, 10000);

  assert_int_equal(th_etcd_kill(&g_etcd, SIGKILL), 0);
  idle(&f->loop, 300);
  assert_int_equal(th_etcd_restart(&g_etcd), 0);
  uint64_t t0 = now_ms();
  /* writes right after the restart arrive, in order, once */
  put_node(f, "/rw3", "g", "b", 2, "{}");
  raw_delete(f, "/rw3/g/nodes/a_e");
  put_node(f, "/rw3", "g", "b", 3, "{}");
  WAIT_FOR(&f->loop, count_desc(&N, "update g node b_e port=3 labels=") == 1, 20000);
  /* the registration is there (again) */
  uint64_t t1 = now_ms();
  while (!raw_get(f, "/rw3/g/nodes/reg_e", NULL)) {
    if (now_ms() - t1 > 15000) fail_msg("the registration did not come back after the restart (errors %d: %s)", rl.errors, rl.last_msg);
    idle(&f->loop, 100);
  }
  fprintf(stderr, "restart: events resumed and node present %llu ms after etcd was up (errors %d, registered %d)\n",
          (unsigned long long)(now_ms() - t0), rl.errors, rl.registered);
  /* and stays past two TTLs: the keepalive runs on the new connection */
  idle(&f->loop, 6500);
  int64_t lease = 0;
  assert_true(raw_get(f, "/rw3/g/nodes/reg_e", &lease));
  assert_true(lease != 0);
  assert_int_equal(rl.ended_calls, 0);
  /* no loss, no duplicate for a and b */
  assert_int_equal(count_desc(&N, "create g node a_e port=1 labels="), 1);
  assert_int_equal(count_desc(&N, "create g node b_e port=2 labels="), 1);
  assert_int_equal(count_desc(&N, "delete g node a_e port=1 labels="), 1);
  assert_int_equal(count_desc(&N, "update g node b_e port=3 labels="), 1);
  /* order: create b, delete a, update b */
  size_t ib = 0, ia = 0, iu = 0;
  for (size_t i = 0; i < N.n; i++) {
    if (!strcmp(N.ev[i].desc, "create g node b_e port=2 labels=")) ib = i;
    if (!strcmp(N.ev[i].desc, "delete g node a_e port=1 labels=")) ia = i;
    if (!strcmp(N.ev[i].desc, "update g node b_e port=3 labels=")) iu = i;
  }
  assert_true(ib < ia && ia < iu);
  assert_int_equal(N.ended_calls, 0);
  fx_close_reg(f, reg);
  assert_false(raw_get(f, "/rw3/g/nodes/reg_e", NULL));
  int closed = 0;
  etcdreg_client_close(rc, itest_on_closed, &closed);
  itest_run_until(&f->loop, &closed, 15000);
}

/* ==================================================================================== */
/* 12. compaction while the watcher was away                                            */

typedef struct {
  int reconnecting, ready_after;
} states_t;
static states_t g_states;

static void on_state(etcdreg_client_t *c, etcdreg_conn_state_t st, int err, const char *detail, const char *ep, void *data) {
  (void)c;
  (void)err;
  (void)detail;
  (void)ep;
  (void)data;
  if (st == ETCDREG_STATE_RECONNECTING) g_states.reconnecting++;
  if (st == ETCDREG_STATE_READY && g_states.reconnecting) g_states.ready_after++;
}

static void via_proxy(etcdreg_client_options_t *o) {
  o->backoff_initial_ms = 50;
  o->backoff_max_ms = 300;
  o->on_state = on_state;
}

typedef struct {
  int done, status;
} cmp_t;
static void on_compact(etcdreg_request_t *req, int status, const etcdreg_compact_result_t *r, void *data) {
  (void)req;
  (void)r;
  cmp_t *c = data;
  c->done = 1;
  c->status = status;
}

static void proxy_closed(void *data) { *(int *)data = 1; }

static void test_compaction_converges(void **state) {
  fx_t *f = *state;
  tproxy_t *p;
  assert_int_equal(tproxy_start(&f->loop, g_etcd.client_port, &p), 0);
  char ep[64];
  tproxy_endpoint(p, ep, sizeof(ep));
  memset(&g_states, 0, sizeof(g_states));
  etcdreg_client_t *wc = itest_client(&f->loop, ep, via_proxy);
  etcdreg_registry_t *reg = fx_open_on(f, wc, "/rw4");
  /* the starting state */
  raw_put(f, "/rw4/g", "{\"name\":\"g\",\"spec\":{\"username\":\"\",\"password\":\"\"},\"created\":\"2026-01-01T00:00:00Z\"}");
  put_node(f, "/rw4", "g", "y", 1, "{}");
  put_node(f, "/rw4", "g", "z", 2, "{}");
  put_node(f, "/rw4", "g2", "s", 3, "{}");
  static wlog_t N, G, S;
  memset(&N, 0, sizeof(N));
  memset(&G, 0, sizeof(G));
  memset(&S, 0, sizeof(S));
  assert_int_equal(etcdreg_registry_watch_group_nodes(reg, "g", &wcbs, &N, &N.h), 0);
  assert_int_equal(etcdreg_registry_watch_group(reg, "g", &wcbs, &G, &G.h), 0);
  assert_int_equal(etcdreg_registry_watch_services(reg, &wcbs, &S, &S.h), 0);
  WAIT_FOR(&f->loop, N.ready && G.ready && S.ready, 15000);
  /* a normal event first: the watches are live */
  put_node(f, "/rw4", "g", "y", 10, "{}");
  WAIT_FOR(&f->loop, N.n == 1 && G.n == 1 && S.n == 1, 10000);

  /* the watcher goes away */
  tproxy_set_refuse(p, 1);
  tproxy_cut(p);
  WAIT_FOR(&f->loop, g_states.reconnecting > 0, 10000);
  /* meanwhile: create x, delete y, update z, update the group config, delete g2's node;
   * then compact everything */
  put_node(f, "/rw4", "g", "x", 4, "{}");
  int64_t y_deleted = raw_delete(f, "/rw4/g/nodes/y_e");
  put_node(f, "/rw4", "g", "z", 20, "{}");
  raw_put(f, "/rw4/g",
          "{\"name\":\"g\",\"spec\":{\"username\":\"u2\",\"password\":\"\",\"common_labels\":{\"k\":\"v\"}},\"created\":\"2026-01-01T00:00:00Z\"}");
  raw_delete(f, "/rw4/g2/nodes/s_e");
  int64_t last = raw_put(f, "/rw4-marker", "x"); /* the newest revision */
  static cmp_t cc;
  memset(&cc, 0, sizeof(cc));
  assert_int_equal(etcdreg_compact(f->c, last, 1, 0, on_compact, &cc, NULL), 0);
  WAIT_FOR(&f->loop, cc.done, 15000);
  assert_int_equal(cc.status, 0);
  assert_int_equal(N.n, 1); /* nothing got through */

  /* it comes back: the differences are reported */
  tproxy_set_refuse(p, 0);
  WAIT_FOR(&f->loop, N.n >= 4 && G.n >= 5 && S.n >= 6, 20000);
  idle(&f->loop, 300);
  const char *want_n[] = {
      "create g node x_e port=4 labels=",
      "delete g node y_e port=10 labels=",
      "update g node z_e port=20 labels=",
  };
  const char *want_g[] = {
      "create g node x_e port=4 labels=",
      "delete g node y_e port=10 labels=",
      "update g node z_e port=20 labels=",
      "update g cfg g user=u2 labels=k=v",
  };
  const char *want_s[] = {
      "create g node x_e port=4 labels=",
      "delete g node y_e port=10 labels=",
      "update g node z_e port=20 labels=",
      "update g cfg g user=u2 labels=k=v",
      "delete g2 node s_e port=3 labels=",
  };
  expect_events("nodes g after compaction", &N, 1, want_n, 3, 1);
  expect_events("group g after compaction", &G, 1, want_g, 4, 1);
  expect_events("services after compaction", &S, 1, want_s, 5, 1);
  assert_int_equal(N.ended_calls + G.ended_calls + S.ended_calls, 0);
  /* a resync is not a new start: ready stays fired once */
  assert_int_equal(N.ready_calls, 1);
  assert_int_equal(G.ready_calls, 1);
  assert_int_equal(S.ready_calls, 1);
  /* (the test's own check that it exercised the resync: after a compaction the delete's
   * own revision is gone, the re-read's revision is all a watch can report) */
  for (size_t i = 1; i < N.n; i++)
    if (!strcmp(N.ev[i].desc, "delete g node y_e port=10 labels=") && N.ev[i].revision == y_deleted)
      fail_msg("the delete came through the plain watch: the compaction path was not exercised");

  /* and carries on */
  size_t n0 = N.n, g0 = G.n, s0 = S.n;
  put_node(f, "/rw4", "g", "w", 5, "{}");
  raw_delete(f, "/rw4/g/nodes/x_e");
  WAIT_FOR(&f->loop, N.n >= n0 + 2 && G.n >= g0 + 2 && S.n >= s0 + 2, 10000);
  idle(&f->loop, 200);
  const char *want_after[] = {"create g node w_e port=5 labels=", "delete g node x_e port=4 labels="};
  expect_events("nodes g afterwards", &N, n0, want_after, 2, 0);
  expect_events("group g afterwards", &G, g0, want_after, 2, 0);
  expect_events("services afterwards", &S, s0, want_after, 2, 0);

  fx_close_reg(f, reg);
  assert_int_equal(N.end_status, ETCDREG_ECLOSED);
  int closed = 0;
  etcdreg_client_close(wc, itest_on_closed, &closed);
  itest_run_until(&f->loop, &closed, 15000);
  int pc = 0;
  tproxy_close(p, proxy_closed, &pc);
  itest_run_until(&f->loop, &pc, 10000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_watch_events, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_watch_ready_then_no_loss, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_compaction_converges, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_etcd_restart, fx_setup, fx_teardown),
  };
  if (getenv("ITEST_FILTER")) cmocka_set_test_filter(getenv("ITEST_FILTER"));
  return cmocka_run_group_tests_name("registry_watch", tests, itest_etcd_up, itest_etcd_down);
}
