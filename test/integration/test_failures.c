/* What users hit when things go wrong: deadlines, cancellation, close with calls in
 * flight, a closed port, and etcd killed in the middle of calls. */
#include <signal.h>
#include <time.h>

#include "itest.h"

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Makes sure the client has a live connection (so later calls are really sent). */
static void warm_up(uv_loop_t *loop, etcdreg_client_t *c) {
  itest_result_t r = {0};
  itest_range(loop, c, "/warm", NULL, &r);
  assert_int_equal(r.status, 0);
  itest_result_reset(&r);
}

static void test_deadline_expires(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  warm_up(&loop, c);
  assert_int_equal(th_etcd_kill(&g_etcd, SIGSTOP), 0); /* etcd stops answering */
  itest_result_t r = {0};
  etcdreg_range_opts_t o = {.timeout_ms = 300};
  assert_int_equal(etcdreg_range(c, "/dl", 3, &o, itest_on_range, &r, NULL), 0);
  itest_run_until(&loop, &r.done, 20000);
  assert_int_equal(th_etcd_kill(&g_etcd, SIGCONT), 0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, ETCDREG_ETIMEDOUT);
  assert_int_equal(r.grpc_status, -1);
  assert_non_null(strstr(r.message, "deadline"));
  /* The connection survives a call that timed out. */
  itest_range(&loop, c, "/dl", NULL, &r);
  assert_int_equal(r.status, 0);
  itest_result_reset(&r);
  itest_close(&loop, c);
}

typedef struct {
  int fired;     /* callbacks so far */
  int cancelled; /* of which ECANCELED */
  int closed_after; /* callbacks seen when the close callback ran */
  int closed;
} close_order_t;

static void on_pending_range(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  (void)req;
  (void)res;
  close_order_t *o = data;
  o->fired++;
  if (status == ETCDREG_ECANCELED) o->cancelled++;
  assert_false(o->closed); /* nothing fires after the close callback */
}

static void on_pending_put(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  on_pending_range(req, status, (const etcdreg_range_result_t *)res, data);
}

static void on_client_closed(etcdreg_client_t *c, void *data) {
  (void)c;
  close_order_t *o = data;
  o->closed = 1;
  o->closed_after = o->fired;
}

static void test_close_with_pending_calls(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  warm_up(&loop, c);
  assert_int_equal(th_etcd_kill(&g_etcd, SIGSTOP), 0);
  close_order_t o = {0};
  for (int i = 0; i < 50; i++) {
    assert_int_equal(etcdreg_range(c, "/pending", 8, NULL, on_pending_range, &o, NULL), 0);
    assert_int_equal(etcdreg_put(c, "/pending", 8, "v", 1, NULL, on_pending_put, &o, NULL), 0);
  }
  /* Let the requests reach the socket, then close. */
  for (int i = 0; i < 5; i++) uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(etcdreg_client_close(c, on_client_closed, &o), 0);
  assert_int_equal(o.fired, 0); /* never from inside close */
  itest_result_t r = {0};
  assert_int_equal(etcdreg_range(c, "/x", 2, NULL, itest_on_range, &r, NULL), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_client_close(c, NULL, NULL), ETCDREG_ECLOSED);
  itest_run_until(&loop, &o.closed, 20000);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(th_etcd_kill(&g_etcd, SIGCONT), 0);
  assert_int_equal(o.fired, 100);
  assert_int_equal(o.cancelled, 100);
  assert_int_equal(o.closed_after, 100);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_close_idle_client(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  itest_close(&loop, c); /* never connected: the close callback still fires from the loop */
}

static void short_dial(etcdreg_client_options_t *o) {
  o->dial_timeout_ms = 3000;
  o->max_retries = 0; /* fail fast: report the first connection error */
}

static void test_closed_port(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char ep[64];
  snprintf(ep, sizeof(ep), "127.0.0.1:%d", th_closed_port());
  etcdreg_client_t *c = itest_client(&loop, ep, short_dial);
  itest_result_t r = {0}, w = {0};
  uint64_t t0 = now_ms();
  assert_int_equal(etcdreg_range(c, "/x", 2, NULL, itest_on_range, &r, NULL), 0);
  assert_int_equal(etcdreg_put(c, "/x", 2, "v", 1, NULL, itest_on_put, &w, NULL), 0);
  itest_run_until(&loop, &r.done, 20000);
  itest_run_until(&loop, &w.done, 20000);
  uint64_t elapsed = now_ms() - t0;
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, ETCDREG_EUNAVAILABLE);
  /* A put that never left is provably not applied: unavailable, not "outcome unknown". */
  assert_int_equal(w.status, ETCDREG_EUNAVAILABLE);
  assert_non_null(strstr(r.message, "connect"));
  assert_true(elapsed < 3000);
  itest_result_reset(&r);
  itest_close(&loop, c);
}

typedef struct {
  int outstanding, done;
  int puts_done;
  int put_unknown, put_other, range_unavailable, range_ok, range_other;
  int calls[200];
} killed_t;

typedef struct {
  killed_t *k;
  int index;
} killed_slot_t;

static void on_killed_put(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  (void)req;
  (void)res;
  killed_slot_t *s = data;
  s->k->calls[s->index]++;
  if (status == ETCDREG_EOUTCOMEUNKNOWN) s->k->put_unknown++;
  else s->k->put_other++;
  s->k->puts_done++;
  if (--s->k->outstanding == 0) s->k->done = 1;
}

static void on_killed_range(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  (void)req;
  (void)res;
  killed_slot_t *s = data;
  s->k->calls[s->index]++;
  if (status == ETCDREG_EUNAVAILABLE) s->k->range_unavailable++;
  else if (status == 0) s->k->range_ok++;
  else s->k->range_other++;
  if (--s->k->outstanding == 0) s->k->done = 1;
}

static void no_retries(etcdreg_client_options_t *o) { o->max_retries = 0; }

/* Without retries every pending call fails once: writes that were sent say "outcome
 * unknown", reads say unavailable. */
static void test_etcd_killed_mid_call(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, no_retries);
  warm_up(&loop, c);
  assert_int_equal(th_etcd_kill(&g_etcd, SIGSTOP), 0);
  killed_t k = {0};
  killed_slot_t slots[200];
  for (int i = 0; i < 100; i++) {
    slots[i] = (killed_slot_t){&k, i};
    slots[100 + i] = (killed_slot_t){&k, 100 + i};
    assert_int_equal(etcdreg_put(c, "/killed", 7, "v", 1, NULL, on_killed_put, &slots[i], NULL), 0);
    assert_int_equal(etcdreg_range(c, "/killed", 7, NULL, on_killed_range, &slots[100 + i], NULL), 0);
    k.outstanding += 2;
  }
  for (int i = 0; i < 5; i++) uv_run(&loop, UV_RUN_NOWAIT); /* requests are written */
  assert_int_equal(th_etcd_kill(&g_etcd, SIGKILL), 0);
  itest_run_until(&loop, &k.done, 20000);
  for (int i = 0; i < 200; i++) assert_int_equal(k.calls[i], 1);
  assert_int_equal(k.put_unknown, 100);
  assert_int_equal(k.put_other, 0);
  assert_int_equal(k.range_unavailable, 100);
  assert_int_equal(k.range_other, 0);

  /* etcd comes back on the same port: the next call opens a new connection. */
  assert_int_equal(th_etcd_restart(&g_etcd), 0);
  itest_result_t r = {0};
  itest_range(&loop, c, "/killed", NULL, &r);
  assert_int_equal(r.status, 0);
  itest_result_reset(&r);
  itest_close(&loop, c);
}

/* With the default retries, reads pending while etcd is killed and restarted on the same
 * port complete normally; the writes that were sent report "outcome unknown". */
static void test_etcd_restart_reads_retried(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  itest_put(&loop, c, "/restart/k", "survives", NULL);
  assert_int_equal(th_etcd_kill(&g_etcd, SIGSTOP), 0);
  killed_t k = {0};
  killed_slot_t slots[200];
  for (int i = 0; i < 100; i++) {
    slots[i] = (killed_slot_t){&k, i};
    slots[100 + i] = (killed_slot_t){&k, 100 + i};
    assert_int_equal(etcdreg_put(c, "/restart/w", 10, "v", 1, NULL, on_killed_put, &slots[i], NULL), 0);
    assert_int_equal(etcdreg_range(c, "/restart/k", 10, NULL, on_killed_range, &slots[100 + i], NULL), 0);
    k.outstanding += 2;
  }
  for (int i = 0; i < 5; i++) uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(th_etcd_kill(&g_etcd, SIGKILL), 0);
  itest_run_until(&loop, &k.puts_done, 20000);
  while (k.puts_done < 100) uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(k.put_unknown, 100);
  assert_int_equal(k.range_ok + k.range_other + k.range_unavailable, 0); /* reads still waiting */
  assert_int_equal(th_etcd_restart(&g_etcd), 0);
  itest_run_until(&loop, &k.done, 30000);
  for (int i = 0; i < 200; i++) assert_int_equal(k.calls[i], 1);
  assert_int_equal(k.range_ok, 100);
  itest_close(&loop, c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deadline_expires),
      cmocka_unit_test(test_close_with_pending_calls),
      cmocka_unit_test(test_close_idle_client),
      cmocka_unit_test(test_closed_port),
      cmocka_unit_test(test_etcd_killed_mid_call),
      cmocka_unit_test(test_etcd_restart_reads_retried),
  };
  return cmocka_run_group_tests_name("failures", tests, itest_etcd_up, itest_etcd_down);
}
