/* Watches against a real etcd: keys, prefixes, ranges, prev_kv, filters, history,
 * cancel, 10 000 watches on one stream, fragments, compaction, and no loss or
 * duplicate across etcd restarts and connection cuts. */
#include <signal.h>

#include "itest.h"
#include "tproxy.h"

static int watch_up(void **state) {
  (void)state;
  const char *flags[] = {"--grpc-keepalive-min-time", "500ms", NULL};
  return th_etcd_start(&g_etcd, flags) == 0 ? 0 : -1;
}

/* One recorded event. */
typedef struct {
  int type;
  int64_t mod_revision;
  char key[64];
  size_t value_len;
  char value_head[32];
  int has_prev;
  char prev_value[32];
} rec_t;

typedef struct {
  int ready;
  int64_t ready_rev;
  int ended, ended_calls, end_status;
  int64_t compact_rev;
  char reason[256];
  rec_t *recs;
  size_t n, cap;
  int batches;
} watch_log_t;

static void wl_free(watch_log_t *l) {
  free(l->recs);
  memset(l, 0, sizeof(*l));
}

static void on_ready(etcdreg_watch_t *w, int64_t rev, void *data) {
  (void)w;
  watch_log_t *l = data;
  l->ready++;
  l->ready_rev = rev;
}

static void on_events(etcdreg_watch_t *w, int64_t rev, const etcdreg_watch_event_t *ev, size_t n, void *data) {
  (void)w;
  (void)rev;
  watch_log_t *l = data;
  l->batches++;
  for (size_t i = 0; i < n; i++) {
    if (l->n == l->cap) {
      l->cap = l->cap ? l->cap * 2 : 64;
      l->recs = realloc(l->recs, l->cap * sizeof(rec_t));
    }
    rec_t *r = &l->recs[l->n++];
    memset(r, 0, sizeof(*r));
    r->type = ev[i].type;
    r->mod_revision = ev[i].kv.mod_revision;
    snprintf(r->key, sizeof(r->key), "%.*s", (int)ev[i].kv.key_len, (const char *)ev[i].kv.key);
    r->value_len = ev[i].kv.value_len;
    snprintf(r->value_head, sizeof(r->value_head), "%.*s", (int)(ev[i].kv.value_len < 31 ? ev[i].kv.value_len : 31),
             (const char *)ev[i].kv.value);
    if (ev[i].prev_kv) {
      r->has_prev = 1;
      snprintf(r->prev_value, sizeof(r->prev_value), "%.*s", (int)ev[i].prev_kv->value_len,
               (const char *)ev[i].prev_kv->value);
    }
  }
}

static void on_ended(etcdreg_watch_t *w, int status, int64_t compact_rev, const char *reason, void *data) {
  (void)w;
  watch_log_t *l = data;
  l->ended = 1;
  l->ended_calls++;
  l->end_status = status;
  l->compact_rev = compact_rev;
  snprintf(l->reason, sizeof(l->reason), "%s", reason);
}

static const etcdreg_watch_cbs_t log_cbs = {.ready = on_ready, .events = on_events, .ended = on_ended};

typedef struct {
  uv_loop_t loop;
  etcdreg_client_t *c;
} fx_t;

static int fx_setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  uv_loop_init(&f->loop);
  f->c = itest_client(&f->loop, g_etcd.endpoint, NULL);
  *state = f;
  return 0;
}

static int fx_teardown(void **state) {
  fx_t *f = *state;
  itest_close(&f->loop, f->c);
  free(f);
  return 0;
}

static void wait_events_timeout(uv_loop_t *loop, watch_log_t *l, size_t n, uint64_t ms) {
  int expired = 0;
  uv_timer_t t;
  uv_timer_init(loop, &t);
  t.data = &expired;
  uv_timer_start(&t, itest_watchdog_cb, ms, 0);
  while (l->n < n && !expired && !l->ended) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  if (l->n < n) fail_msg("got %zu of %zu events (ended=%d %s)", l->n, n, l->ended, l->reason);
}

/* Closes the fixture's client (ending its watchers, whose logs live on the test's stack)
 * and opens a fresh one for the teardown. */
static void renew_client(fx_t *f) {
  int closed = 0;
  etcdreg_client_close(f->c, itest_on_closed, &closed);
  itest_run_until(&f->loop, &closed, 30000);
  f->c = itest_client(&f->loop, g_etcd.endpoint, NULL);
}

static void wait_events(uv_loop_t *loop, watch_log_t *l, size_t n) { wait_events_timeout(loop, l, n, 60000); }

static void test_watch_key_prefix_range(void **state) {
  fx_t *f = *state;
  watch_log_t key = {0}, prefix = {0}, range = {0};
  etcdreg_watch_t *wk, *wp, *wr;
  etcdreg_watch_opts_t ko = {.prev_kv = 1};
  assert_int_equal(etcdreg_watch_start(f->c, "/w/a/1", 6, &ko, &log_cbs, &key, &wk), 0);
  etcdreg_watch_opts_t po = {.prefix = 1};
  assert_int_equal(etcdreg_watch_start(f->c, "/w/a/", 5, &po, &log_cbs, &prefix, &wp), 0);
  etcdreg_watch_opts_t ro = {.range_end = "/w/a/3", .range_end_len = 6};
  assert_int_equal(etcdreg_watch_start(f->c, "/w/a/2", 6, &ro, &log_cbs, &range, &wr), 0);
  itest_run_until(&f->loop, &key.ready, 15000);
  itest_run_until(&f->loop, &prefix.ready, 15000);
  itest_run_until(&f->loop, &range.ready, 15000);
  assert_int_equal(key.ready, 1);
  itest_put(&f->loop, f->c, "/w/a/1", "one", NULL);
  itest_put(&f->loop, f->c, "/w/a/2", "two", NULL);
  itest_put(&f->loop, f->c, "/w/a/3", "three", NULL);
  itest_put(&f->loop, f->c, "/w/b", "outside", NULL);
  itest_put(&f->loop, f->c, "/w/a/1", "uno", NULL);
  itest_result_t d = {0};
  assert_int_equal(etcdreg_delete(f->c, "/w/a/1", 6, NULL, itest_on_delete, &d, NULL), 0);
  itest_run_until(&f->loop, &d.done, 15000);
  wait_events(&f->loop, &key, 3);
  wait_events(&f->loop, &prefix, 5);
  wait_events(&f->loop, &range, 1);
  /* key: put, put, delete with the previous value */
  assert_int_equal(key.recs[0].type, ETCDREG_EVENT_PUT);
  assert_string_equal(key.recs[0].value_head, "one");
  assert_false(key.recs[0].has_prev);
  assert_true(key.recs[1].has_prev);
  assert_string_equal(key.recs[1].prev_value, "one");
  assert_int_equal(key.recs[2].type, ETCDREG_EVENT_DELETE);
  assert_true(key.recs[2].has_prev);
  assert_string_equal(key.recs[2].prev_value, "uno");
  assert_true(key.recs[0].mod_revision < key.recs[1].mod_revision);
  /* prefix: 5 events in revision order, nothing outside */
  for (size_t i = 1; i < prefix.n; i++) assert_true(prefix.recs[i].mod_revision > prefix.recs[i - 1].mod_revision);
  for (size_t i = 0; i < prefix.n; i++) assert_memory_equal(prefix.recs[i].key, "/w/a/", 5);
  /* range [/w/a/2, /w/a/3): only /w/a/2 */
  assert_int_equal(range.n, 1);
  assert_string_equal(range.recs[0].key, "/w/a/2");
  assert_true(etcdreg_watch_next_revision(wk) == key.recs[2].mod_revision + 1);
  etcdreg_watch_cancel(wk);
  etcdreg_watch_cancel(wp);
  etcdreg_watch_cancel(wr);
  itest_run_until(&f->loop, &range.ended, 15000);
  wl_free(&key);
  wl_free(&prefix);
  wl_free(&range);
}

static void test_watch_filters_and_history(void **state) {
  fx_t *f = *state;
  int64_t first = itest_put(&f->loop, f->c, "/w/h/k", "v1", NULL);
  itest_put(&f->loop, f->c, "/w/h/k", "v2", NULL);
  itest_result_t d = {0};
  assert_int_equal(etcdreg_delete(f->c, "/w/h/k", 6, NULL, itest_on_delete, &d, NULL), 0);
  itest_run_until(&f->loop, &d.done, 15000);
  itest_put(&f->loop, f->c, "/w/h/k", "v3", NULL);
  /* History from the first put, everything. */
  watch_log_t all = {0}, puts = {0}, dels = {0};
  etcdreg_watch_opts_t o = {.start_revision = first};
  assert_int_equal(etcdreg_watch_start(f->c, "/w/h/k", 6, &o, &log_cbs, &all, NULL), 0);
  etcdreg_watch_opts_t np = {.start_revision = first, .no_put = 1};
  assert_int_equal(etcdreg_watch_start(f->c, "/w/h/k", 6, &np, &log_cbs, &dels, NULL), 0);
  etcdreg_watch_opts_t nd = {.start_revision = first, .no_delete = 1};
  assert_int_equal(etcdreg_watch_start(f->c, "/w/h/k", 6, &nd, &log_cbs, &puts, NULL), 0);
  wait_events(&f->loop, &all, 4);
  wait_events(&f->loop, &dels, 1);
  wait_events(&f->loop, &puts, 3);
  assert_int_equal(all.recs[0].mod_revision, first);
  assert_string_equal(all.recs[0].value_head, "v1");
  assert_int_equal(all.recs[2].type, ETCDREG_EVENT_DELETE);
  assert_string_equal(all.recs[3].value_head, "v3");
  assert_int_equal(dels.recs[0].type, ETCDREG_EVENT_DELETE);
  for (size_t i = 0; i < puts.n; i++) assert_int_equal(puts.recs[i].type, ETCDREG_EVENT_PUT);
  /* Nothing more arrives for the filtered ones. */
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(dels.n, 1);
  assert_int_equal(puts.n, 3);
  renew_client(f);
  assert_int_equal(all.ended, 1);
  assert_int_equal(all.end_status, ETCDREG_ECLOSED);
  wl_free(&all);
  wl_free(&puts);
  wl_free(&dels);
}

static void test_watch_cancel_ends_once(void **state) {
  fx_t *f = *state;
  watch_log_t l = {0};
  etcdreg_watch_t *w;
  assert_int_equal(etcdreg_watch_start(f->c, "/w/c", 4, NULL, &log_cbs, &l, &w), 0);
  itest_run_until(&f->loop, &l.ready, 15000);
  etcdreg_watch_cancel(w);
  etcdreg_watch_cancel(w); /* second cancel: no-op */
  assert_int_equal(l.ended_calls, 0); /* never from inside the call */
  itest_run_until(&f->loop, &l.ended, 15000);
  itest_put(&f->loop, f->c, "/w/c", "after", NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(l.ended_calls, 1);
  assert_int_equal(l.end_status, ETCDREG_ECANCELED);
  assert_int_equal(l.n, 0);
  wl_free(&l);
}

typedef struct {
  int ready, events, wrong, ended;
  char key[24];
} many_w_t;

static void m_ready(etcdreg_watch_t *w, int64_t rev, void *data) {
  (void)w;
  (void)rev;
  ((many_w_t *)data)->ready++;
}
static int g_ready_total, g_events_total;
static void m_ready_count(etcdreg_watch_t *w, int64_t rev, void *data) {
  m_ready(w, rev, data);
  g_ready_total++;
}
static void m_events(etcdreg_watch_t *w, int64_t rev, const etcdreg_watch_event_t *ev, size_t n, void *data) {
  (void)w;
  (void)rev;
  many_w_t *m = data;
  for (size_t i = 0; i < n; i++) {
    if (ev[i].kv.key_len != strlen(m->key) || memcmp(ev[i].kv.key, m->key, ev[i].kv.key_len)) m->wrong++;
    m->events++;
    g_events_total++;
  }
}
static void m_ended(etcdreg_watch_t *w, int status, int64_t c, const char *r, void *data) {
  (void)w;
  (void)status;
  (void)c;
  (void)r;
  ((many_w_t *)data)->ended++;
}

typedef struct {
  int outstanding, done, failed;
} puts_t;

static void on_bulk_put(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  (void)req;
  (void)res;
  puts_t *p = data;
  if (status) p->failed++;
  if (--p->outstanding == 0) p->done = 1;
}

static void test_10000_watches_one_stream(void **state) {
  fx_t *f = *state;
  enum { N = 10000 };
  many_w_t *ws = calloc(N, sizeof(*ws));
  etcdreg_watch_cbs_t cbs = {.ready = m_ready_count, .events = m_events, .ended = m_ended};
  g_ready_total = g_events_total = 0;
  for (int i = 0; i < N; i++) {
    snprintf(ws[i].key, sizeof(ws[i].key), "/w/many/%05d", i);
    assert_int_equal(etcdreg_watch_start(f->c, ws[i].key, strlen(ws[i].key), NULL, &cbs, &ws[i], NULL), 0);
  }
  int all_ready = 0;
  while (!all_ready) {
    uv_run(&f->loop, UV_RUN_ONCE);
    all_ready = g_ready_total == N;
  }
  puts_t p = {0};
  for (int i = 0; i < N; i++) {
    assert_int_equal(etcdreg_put(f->c, ws[i].key, strlen(ws[i].key), "x", 1, NULL, on_bulk_put, &p, NULL), 0);
    p.outstanding++;
  }
  itest_run_until(&f->loop, &p.done, 120000);
  assert_int_equal(p.failed, 0);
  while (g_events_total < N) uv_run(&f->loop, UV_RUN_ONCE);
  for (int i = 0; i < N; i++) {
    assert_int_equal(ws[i].ready, 1);
    assert_int_equal(ws[i].events, 1);
    assert_int_equal(ws[i].wrong, 0);
  }
  /* The client's own close ends them all (checked in teardown through itest_close); here
   * the watchers must be gone before `ws` is freed, so close now. */
  renew_client(f);
  for (int i = 0; i < N; i++) assert_int_equal(ws[i].ended, 1);
  free(ws);
}

static void test_watch_fragments(void **state) {
  fx_t *f = *state;
  size_t n = 1024 * 1024;
  char *big = malloc(n + 1);
  memset(big, 'f', n);
  big[n] = 0;
  int64_t first = 0;
  for (int i = 0; i < 3; i++) {
    char key[32];
    snprintf(key, sizeof(key), "/w/frag/%d", i);
    big[0] = (char)('0' + i);
    int64_t rev = itest_put(&f->loop, f->c, key, big, NULL);
    if (!first) first = rev;
  }
  free(big);
  watch_log_t l = {0};
  etcdreg_watch_opts_t o = {.prefix = 1, .start_revision = 1, .fragment = 1};
  assert_int_equal(etcdreg_watch_start(f->c, "/w/frag/", 8, &o, &log_cbs, &l, NULL), 0);
  wait_events(&f->loop, &l, 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(l.recs[i].value_len, n);
    assert_int_equal(l.recs[i].value_head[0], '0' + i);
    assert_int_equal(l.recs[i].mod_revision, first + i);
  }
  renew_client(f);
  wl_free(&l);
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

static void test_watch_compacted(void **state) {
  fx_t *f = *state;
  itest_put(&f->loop, f->c, "/w/cmp", "1", NULL);
  int64_t rev = itest_put(&f->loop, f->c, "/w/cmp", "2", NULL);
  cmp_t cc = {0};
  assert_int_equal(etcdreg_compact(f->c, rev, 1, 0, on_compact, &cc, NULL), 0);
  itest_run_until(&f->loop, &cc.done, 15000);
  assert_int_equal(cc.status, 0);
  watch_log_t l = {0};
  etcdreg_watch_opts_t o = {.start_revision = 1};
  assert_int_equal(etcdreg_watch_start(f->c, "/w/cmp", 6, &o, &log_cbs, &l, NULL), 0);
  itest_run_until(&f->loop, &l.ended, 15000);
  assert_int_equal(l.end_status, ETCDREG_ECOMPACTED);
  assert_int_equal(l.compact_rev, rev);
  assert_int_equal(l.n, 0);
  wl_free(&l);
}

/* ---- no loss across restarts and cuts ---- */

typedef struct {
  etcdreg_client_t *c;
  int next, target, ok, done, in_flight;
} writer_t;

static void writer_step(writer_t *w);

static void on_writer_put(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  (void)req;
  (void)res;
  writer_t *w = data;
  w->in_flight = 0;
  if (status == 0) w->ok++;
  /* failures (outcome unknown, unavailable) are fine: the reference read tells */
  w->next++;
  writer_step(w);
}

static void writer_step(writer_t *w) {
  if (w->ok >= w->target) {
    w->done = 1;
    return;
  }
  char key[32], val[32];
  snprintf(key, sizeof(key), "/w/loss/%03d", w->next % 50);
  snprintf(val, sizeof(val), "%d", w->next);
  etcdreg_put_opts_t o = {.timeout_ms = 3000};
  w->in_flight = 1;
  if (etcdreg_put(w->c, key, strlen(key), val, strlen(val), &o, on_writer_put, w, NULL) != 0) fail_msg("put refused");
}

static void compare_with_reference(uv_loop_t *loop, const char *endpoint, watch_log_t *got, int64_t from, int64_t until) {
  etcdreg_client_t *ref = itest_client(loop, endpoint, NULL);
  watch_log_t want = {0};
  etcdreg_watch_opts_t o = {.prefix = 1, .start_revision = from};
  etcdreg_watch_t *w;
  assert_int_equal(etcdreg_watch_start(ref, "/w/loss/", 8, &o, &log_cbs, &want, &w), 0);
  while (!want.n || want.recs[want.n - 1].mod_revision < until) {
    if (want.ended) fail_msg("reference watch ended: %s", want.reason);
    uv_run(loop, UV_RUN_ONCE);
  }
  assert_int_equal(got->n, want.n);
  for (size_t i = 0; i < want.n; i++) {
    if (got->recs[i].mod_revision != want.recs[i].mod_revision || strcmp(got->recs[i].key, want.recs[i].key) ||
        strcmp(got->recs[i].value_head, want.recs[i].value_head))
      fail_msg("event %zu differs: got rev %lld %s=%s, want rev %lld %s=%s", i, (long long)got->recs[i].mod_revision,
               got->recs[i].key, got->recs[i].value_head, (long long)want.recs[i].mod_revision, want.recs[i].key,
               want.recs[i].value_head);
  }
  etcdreg_watch_cancel(w);
  int closed = 0;
  etcdreg_client_close(ref, itest_on_closed, &closed);
  itest_run_until(loop, &closed, 15000);
  wl_free(&want);
}

static void restart_cb(uv_timer_t *t) {
  int *phase = t->data;
  if (*phase == 0) {
    assert_int_equal(th_etcd_kill(&g_etcd, SIGKILL), 0);
    *phase = 1;
    uv_timer_start(t, restart_cb, 300, 0);
  } else if (*phase == 1) {
    assert_int_equal(th_etcd_restart(&g_etcd), 0);
    *phase = 2;
  }
}

static void on_watch_progress_kill(watch_log_t *l, uv_timer_t *t, int *phase) {
  if (*phase == -1 && l->n >= 500) {
    *phase = 0;
    uv_timer_start(t, restart_cb, 0, 0);
  }
}

static void fast_ping(etcdreg_client_options_t *o) {
  o->keepalive_interval_ms = 1000;
  o->keepalive_timeout_ms = 1000;
}

static void test_no_loss_across_etcd_restart(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *wc = itest_client(&loop, g_etcd.endpoint, fast_ping);
  etcdreg_client_t *pc = itest_client(&loop, g_etcd.endpoint, fast_ping);
  int64_t start = itest_put(&loop, pc, "/w/loss-start", "x", NULL);
  watch_log_t got = {0};
  etcdreg_watch_opts_t o = {.prefix = 1, .start_revision = start};
  assert_int_equal(etcdreg_watch_start(wc, "/w/loss/", 8, &o, &log_cbs, &got, NULL), 0);
  writer_t w = {.c = pc, .target = 2000};
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  int phase = -1;
  t.data = &phase;
  writer_step(&w);
  while (!w.done) {
    uv_run(&loop, UV_RUN_ONCE);
    on_watch_progress_kill(&got, &t, &phase);
    if (got.ended) fail_msg("watch ended: %s", got.reason);
  }
  assert_int_equal(phase, 2);
  itest_result_t r = {0};
  etcdreg_range_opts_t ro = {.prefix = 1, .count_only = 1};
  itest_range(&loop, pc, "/w/loss/", &ro, &r);
  int64_t last = r.revision;
  while (!got.n || got.recs[got.n - 1].mod_revision < last - 0) {
    uv_run(&loop, UV_RUN_ONCE);
    if (got.n && got.recs[got.n - 1].mod_revision >= last) break;
    if (got.ended) fail_msg("watch ended: %s", got.reason);
    /* the last revision may be a put outside the prefix: stop at the last event <= last */
    if (got.n >= (size_t)w.ok) break;
  }
  uv_close((uv_handle_t *)&t, NULL);
  compare_with_reference(&loop, g_etcd.endpoint, &got, start, got.recs[got.n - 1].mod_revision);
  fprintf(stderr, "restart: %zu events, writer ok %d of %d attempts\n", got.n, w.ok, w.next);
  wl_free(&got);
  itest_result_reset(&r);
  etcdreg_client_close(wc, NULL, NULL);
  itest_close(&loop, pc);
}

static void proxy_closed(void *data) { *(int *)data = 1; }

static void test_no_loss_across_cuts(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  tproxy_t *p;
  assert_int_equal(tproxy_start(&loop, g_etcd.client_port, &p), 0);
  char ep[64];
  tproxy_endpoint(p, ep, sizeof(ep));
  etcdreg_client_t *wc = itest_client(&loop, ep, fast_ping);
  etcdreg_client_t *pc = itest_client(&loop, g_etcd.endpoint, NULL);
  int64_t start = itest_put(&loop, pc, "/w/loss-start", "y", NULL);
  watch_log_t got = {0};
  etcdreg_watch_opts_t o = {.prefix = 1, .start_revision = start};
  assert_int_equal(etcdreg_watch_start(wc, "/w/loss/", 8, &o, &log_cbs, &got, NULL), 0);
  writer_t w = {.c = pc, .target = 2000};
  int cuts = 0;
  size_t seen_before = got.n;
  writer_step(&w);
  while (!w.done) {
    uv_run(&loop, UV_RUN_ONCE);
    if ((cuts == 0 && got.n >= seen_before + 400) || (cuts == 1 && got.n >= seen_before + 1200)) {
      tproxy_cut(p);
      cuts++;
    }
    if (got.ended) fail_msg("watch ended: %s", got.reason);
  }
  assert_int_equal(cuts, 2);
  /* The writer's last put is the newest revision under the prefix. */
  while (got.n < seen_before + (size_t)w.ok) {
    uv_run(&loop, UV_RUN_ONCE);
    if (got.ended) fail_msg("watch ended: %s", got.reason);
  }
  compare_with_reference(&loop, g_etcd.endpoint, &got, start, got.recs[got.n - 1].mod_revision);
  wl_free(&got);
  etcdreg_client_close(wc, NULL, NULL);
  etcdreg_client_close(pc, NULL, NULL);
  int done = 0;
  tproxy_close(p, proxy_closed, &done);
  itest_run_until(&loop, &done, 10000);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_watch_key_prefix_range, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_watch_filters_and_history, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_watch_cancel_ends_once, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_10000_watches_one_stream, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_watch_fragments, fx_setup, fx_teardown),
      cmocka_unit_test(test_no_loss_across_cuts),
      cmocka_unit_test(test_no_loss_across_etcd_restart),
      cmocka_unit_test_setup_teardown(test_watch_compacted, fx_setup, fx_teardown),
  };
  if (getenv("ITEST_FILTER")) cmocka_set_test_filter(getenv("ITEST_FILTER"));
  return cmocka_run_group_tests_name("watch", tests, watch_up, itest_etcd_down);
}
