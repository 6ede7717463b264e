/* Lease keepalive against a real etcd: a kept-alive key outlives its TTL many times and
 * vanishes after stop; a lease revoked elsewhere, or a server that stops answering, is
 * reported lost; 10 000 leases ride one stream; close ends everything once. */
#include <signal.h>
#include <time.h>

#include "itest.h"

typedef struct {
  int granted, status;
  int64_t id, ttl;
} grant_t;

static void on_grant(etcdreg_request_t *req, int status, const etcdreg_lease_grant_result_t *res, void *data) {
  (void)req;
  grant_t *g = data;
  g->granted = 1;
  g->status = status;
  if (!status) {
    g->id = res->id;
    g->ttl = res->ttl;
  }
}

static grant_t grant(uv_loop_t *loop, etcdreg_client_t *c, int64_t ttl) {
  grant_t g = {0};
  assert_int_equal(etcdreg_lease_grant(c, ttl, 0, 0, on_grant, &g, NULL), 0);
  itest_run_until(loop, &g.granted, 15000);
  assert_int_equal(g.status, 0);
  return g;
}

typedef struct {
  int renewed;
  int64_t last_ttl;
  int ended, ended_calls, status;
  char reason[200];
} ka_log_t;

static void on_renewed(etcdreg_keepalive_t *k, int64_t ttl, void *data) {
  (void)k;
  ka_log_t *l = data;
  l->renewed++;
  l->last_ttl = ttl;
}

static void on_ka_ended(etcdreg_keepalive_t *k, int status, const char *reason, void *data) {
  (void)k;
  ka_log_t *l = data;
  l->ended = 1;
  l->ended_calls++;
  l->status = status;
  snprintf(l->reason, sizeof(l->reason), "%s", reason);
}

static const etcdreg_keepalive_cbs_t ka_cbs = {on_renewed, on_ka_ended};

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

static int key_exists(uv_loop_t *loop, etcdreg_client_t *c, const char *key) {
  itest_result_t r = {0};
  itest_range(loop, c, key, NULL, &r);
  assert_int_equal(r.status, 0);
  int n = (int)r.kv_count;
  itest_result_reset(&r);
  return n;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_keepalive_outlives_ttl_then_expires(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  grant_t g = grant(&loop, c, 2);
  assert_true(g.ttl >= 2);
  etcdreg_put_opts_t po = {.lease = g.id};
  itest_put(&loop, c, "/ka/alive", "1", &po);
  ka_log_t l = {0};
  etcdreg_keepalive_t *k;
  assert_int_equal(etcdreg_lease_keepalive_start(c, g.id, g.ttl, &ka_cbs, &l, &k), 0);
  assert_int_equal(etcdreg_keepalive_lease_id(k), g.id);
  assert_int_equal(etcdreg_lease_keepalive_start(c, g.id, g.ttl, &ka_cbs, &l, NULL), ETCDREG_EEXIST);
  idle(&loop, (uint64_t)g.ttl * 1000 * 3 + 500); /* 3 x TTL */
  assert_int_equal(key_exists(&loop, c, "/ka/alive"), 1);
  assert_true(l.renewed >= 3);
  assert_int_equal(l.last_ttl, g.ttl);
  assert_false(l.ended);
  /* Stop: the key goes within TTL + 2 s. */
  etcdreg_lease_keepalive_stop(k);
  itest_run_until(&loop, &l.ended, 5000);
  assert_int_equal(l.status, ETCDREG_ECANCELED);
  uint64_t t0 = now_ms();
  while (key_exists(&loop, c, "/ka/alive")) {
    assert_true(now_ms() - t0 < (uint64_t)g.ttl * 1000 + 2000 + 2000 /* ASan margin */);
    idle(&loop, 200);
  }
  assert_int_equal(l.ended_calls, 1);
  itest_close(&loop, c);
}

static void test_keepalive_revoked_elsewhere_is_lost(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  grant_t g = grant(&loop, c, 3);
  ka_log_t l = {0};
  assert_int_equal(etcdreg_lease_keepalive_start(c, g.id, g.ttl, &ka_cbs, &l, NULL), 0);
  while (!l.renewed) uv_run(&loop, UV_RUN_ONCE);
  char hex[32];
  snprintf(hex, sizeof(hex), "%llx", (unsigned long long)g.id);
  const char *args[] = {"lease", "revoke", hex, NULL};
  assert_int_equal(th_etcdctl(&g_etcd, args), 0);
  itest_run_until(&loop, &l.ended, 15000);
  assert_int_equal(l.status, ETCDREG_ELEASELOST);
  assert_non_null(strstr(l.reason, "expired or was revoked"));
  itest_close(&loop, c);
}

static void test_keepalive_unreachable_server_is_lost(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  grant_t g = grant(&loop, c, 2);
  ka_log_t l = {0};
  assert_int_equal(etcdreg_lease_keepalive_start(c, g.id, g.ttl, &ka_cbs, &l, NULL), 0);
  while (!l.renewed) uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(th_etcd_kill(&g_etcd, SIGSTOP), 0);
  itest_run_until(&loop, &l.ended, 20000);
  assert_int_equal(th_etcd_kill(&g_etcd, SIGCONT), 0);
  assert_int_equal(l.status, ETCDREG_ELEASELOST);
  assert_non_null(strstr(l.reason, "no keepalive answer"));
  itest_close(&loop, c);
}

typedef struct {
  int granted, failed;
  int64_t *ids;
  int64_t ttl;
} bulk_t;

static void on_bulk_grant(etcdreg_request_t *req, int status, const etcdreg_lease_grant_result_t *res, void *data) {
  (void)req;
  bulk_t *b = data;
  if (status) b->failed++;
  else {
    b->ids[b->granted] = res->id;
    b->ttl = res->ttl;
  }
  b->granted++;
}

static int g_renewed_total, g_lost;
static void bulk_renewed(etcdreg_keepalive_t *k, int64_t ttl, void *data) {
  (void)k;
  (void)ttl;
  if ((*(int *)data)++ == 0) g_renewed_total++;
}
static void bulk_ended(etcdreg_keepalive_t *k, int status, const char *reason, void *data) {
  (void)k;
  (void)reason;
  (void)data;
  if (status == ETCDREG_ELEASELOST) g_lost++;
}

static void test_10000_keepalives_one_stream(void **state) {
  (void)state;
  enum { N = 10000 };
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  bulk_t b = {0};
  b.ids = calloc(N, sizeof(int64_t));
  for (int i = 0; i < N; i++) assert_int_equal(etcdreg_lease_grant(c, 5, 0, 30000, on_bulk_grant, &b, NULL), 0);
  while (b.granted < N) uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(b.failed, 0);
  int *renewals = calloc(N, sizeof(int));
  etcdreg_keepalive_cbs_t cbs = {bulk_renewed, bulk_ended};
  g_renewed_total = g_lost = 0;
  for (int i = 0; i < N; i++) assert_int_equal(etcdreg_lease_keepalive_start(c, b.ids[i], b.ttl, &cbs, &renewals[i], NULL), 0);
  while (g_renewed_total < N && !g_lost) uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(g_lost, 0);
  /* Past the TTL every lease is still alive (renewed at TTL/3). */
  idle(&loop, (uint64_t)b.ttl * 1000 + 1000);
  assert_int_equal(g_lost, 0);
  for (int i = 0; i < N; i++) assert_true(renewals[i] >= 2);
  int closed = 0;
  etcdreg_client_close(c, itest_on_closed, &closed);
  itest_run_until(&loop, &closed, 30000);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  free(renewals);
  free(b.ids);
}

typedef struct {
  int ended;
  int status;
  int after_close; /* ended seen after the close callback: must never happen */
} end_count_t;

static int g_client_closed;
static void count_ka_ended(etcdreg_keepalive_t *k, int status, const char *r, void *data) {
  (void)k;
  (void)r;
  end_count_t *e = data;
  e->ended++;
  e->status = status;
  if (g_client_closed) e->after_close++;
}
static void count_w_ended(etcdreg_watch_t *w, int status, int64_t cr, const char *r, void *data) {
  (void)w;
  (void)cr;
  (void)r;
  end_count_t *e = data;
  e->ended++;
  e->status = status;
  if (g_client_closed) e->after_close++;
}
static void on_closed_flag(etcdreg_client_t *c, void *data) {
  (void)c;
  (void)data;
  g_client_closed = 1;
}

static void test_close_ends_everything_once(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  end_count_t we[20] = {{0}}, ke[5] = {{0}};
  etcdreg_watch_cbs_t wcbs = {.ready = NULL, .events = NULL, .ended = count_w_ended};
  etcdreg_keepalive_cbs_t kcbs = {NULL, count_ka_ended};
  for (int i = 0; i < 20; i++) {
    etcdreg_watch_opts_t o = {.prefix = 1};
    assert_int_equal(etcdreg_watch_start(c, "/close/", 7, &o, &wcbs, &we[i], NULL), 0);
  }
  for (int i = 0; i < 5; i++) {
    grant_t g = grant(&loop, c, 10);
    assert_int_equal(etcdreg_lease_keepalive_start(c, g.id, g.ttl, &kcbs, &ke[i], NULL), 0);
  }
  idle(&loop, 300);
  g_client_closed = 0;
  assert_int_equal(etcdreg_client_close(c, on_closed_flag, NULL), 0);
  itest_run_until(&loop, &g_client_closed, 15000);
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int i = 0; i < 20; i++) {
    assert_int_equal(we[i].ended, 1);
    assert_int_equal(we[i].status, ETCDREG_ECLOSED);
    assert_int_equal(we[i].after_close, 0);
  }
  for (int i = 0; i < 5; i++) {
    assert_int_equal(ke[i].ended, 1);
    assert_int_equal(ke[i].status, ETCDREG_ECLOSED);
    assert_int_equal(ke[i].after_close, 0);
  }
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keepalive_outlives_ttl_then_expires),
      cmocka_unit_test(test_keepalive_revoked_elsewhere_is_lost),
      cmocka_unit_test(test_keepalive_unreachable_server_is_lost),
      cmocka_unit_test(test_10000_keepalives_one_stream),
      cmocka_unit_test(test_close_ends_everything_once),
  };
  if (getenv("ITEST_FILTER")) cmocka_set_test_filter(getenv("ITEST_FILTER"));
  return cmocka_run_group_tests_name("keepalive", tests, itest_etcd_up, itest_etcd_down);
}
