/* Reconnection through the test proxy: connections cut during writes, a blackholed
 * connection found by the keepalive PING, and the connection-state callback. */
#include <time.h>

#include "itest.h"
#include "tproxy.h"

static int reconnect_up(void **state) {
  (void)state;
  /* Allow the fast pings these tests use (etcd's default minimum is 5 s). */
  const char *flags[] = {"--grpc-keepalive-min-time", "500ms", NULL};
  return th_etcd_start(&g_etcd, flags) == 0 ? 0 : -1;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

typedef struct {
  etcdreg_conn_state_t states[64];
  int errs[64];
  char details[64][160];
  int n;
  uint64_t reconnecting_at;
} state_log_t;

static state_log_t g_states;

static void on_state(etcdreg_client_t *c, etcdreg_conn_state_t st, int err, const char *detail,
                     const char *endpoint, void *data) {
  (void)c;
  (void)endpoint;
  (void)data;
  if (g_states.n < 64) {
    g_states.states[g_states.n] = st;
    g_states.errs[g_states.n] = err;
    snprintf(g_states.details[g_states.n], sizeof(g_states.details[0]), "%s", detail);
    g_states.n++;
  }
  if (st == ETCDREG_STATE_RECONNECTING && !g_states.reconnecting_at) g_states.reconnecting_at = now_ms();
}

static void fast_keepalive(etcdreg_client_options_t *o) {
  o->keepalive_interval_ms = 1000;
  o->keepalive_timeout_ms = 1000;
  o->on_state = on_state;
}

static void proxy_closed(void *data) { *(int *)data = 1; }

static void close_proxy(uv_loop_t *loop, tproxy_t *p) {
  int done = 0;
  tproxy_close(p, proxy_closed, &done);
  itest_run_until(loop, &done, 10000);
}

typedef struct {
  etcdreg_client_t *c;
  tproxy_t *proxy;
  int issued, completed, done, ok, unknown, other, cuts;
  int last_other;
  int *calls;
  struct cut_slot *slots;
} cut_t;

typedef struct cut_slot {
  cut_t *cut;
  int index;
} cut_slot_t;

enum { CUT_N = 1000, CUT_CONC = 64 };

static void issue_put(cut_t *cut);

static void on_cut_put(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  (void)req;
  (void)res;
  cut_slot_t *s = data;
  cut_t *cut = s->cut;
  cut->calls[s->index]++;
  if (status == 0) cut->ok++;
  else if (status == ETCDREG_EOUTCOMEUNKNOWN) cut->unknown++;
  else {
    cut->other++;
    cut->last_other = status;
  }
  cut->completed++;
  /* Cut the connection twice while puts are in flight. */
  if ((cut->completed == 200 || cut->completed == 600) && cut->cuts < 2) {
    cut->cuts++;
    tproxy_cut(cut->proxy);
  }
  if (cut->completed == CUT_N) cut->done = 1;
  issue_put(cut);
}

static void issue_put(cut_t *cut) {
  if (cut->issued >= CUT_N) return;
  int i = cut->issued++;
  char key[32];
  int len = snprintf(key, sizeof(key), "/cut/%04d", i);
  cut->slots[i] = (cut_slot_t){cut, i};
  assert_int_equal(etcdreg_put(cut->c, key, (size_t)len, "v", 1, NULL, on_cut_put, &cut->slots[i], NULL), 0);
}

/* 1 000 puts, 64 in flight, while the proxy cuts the connection twice: every callback
 * fires exactly once, with success or "outcome unknown" (never a silent loss, never
 * twice), and the puts after each cut go through on a new connection. */
static void test_cut_during_puts(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  tproxy_t *p;
  assert_int_equal(tproxy_start(&loop, g_etcd.client_port, &p), 0);
  char ep[64];
  tproxy_endpoint(p, ep, sizeof(ep));
  memset(&g_states, 0, sizeof(g_states));
  etcdreg_client_t *c = itest_client(&loop, ep, fast_keepalive);
  itest_put(&loop, c, "/cut/warm", "1", NULL);

  cut_t cut = {0};
  cut.c = c;
  cut.proxy = p;
  cut.calls = calloc(CUT_N, sizeof(int));
  cut.slots = calloc(CUT_N, sizeof(cut_slot_t));
  for (int i = 0; i < CUT_CONC; i++) issue_put(&cut);
  itest_run_until(&loop, &cut.done, 60000);
  for (int i = 0; i < CUT_N; i++) assert_int_equal(cut.calls[i], 1);
  if (cut.other) fail_msg("%d puts failed with %s", cut.other, etcdreg_err_name(cut.last_other));
  fprintf(stderr, "cut during puts: %d ok, %d outcome unknown, %d cuts\n", cut.ok, cut.unknown, cut.cuts);
  assert_int_equal(cut.cuts, 2);
  assert_int_equal(cut.ok + cut.unknown, CUT_N);
  assert_true(cut.unknown > 0);     /* the cuts really hit calls in flight */
  assert_true(cut.ok > 600);        /* and work went on after each reconnect */
  /* Every put reported ok is really there. */
  itest_result_t r = {0};
  etcdreg_range_opts_t o = {.prefix = 1, .count_only = 1};
  itest_range(&loop, c, "/cut/0", &o, &r);
  assert_true(r.count >= cut.ok && r.count <= CUT_N);
  free(cut.calls);
  free(cut.slots);
  etcdreg_client_close(c, NULL, NULL);
  close_proxy(&loop, p);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void pass_again_cb(uv_timer_t *t) { tproxy_set_mode(t->data, TPROXY_PASS); }

/* A connection that silently stops carrying bytes is found by the PING within the
 * keepalive interval + timeout; the client reconnects and the pending read succeeds. */
static void test_blackhole_detected_by_ping(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  tproxy_t *p;
  assert_int_equal(tproxy_start(&loop, g_etcd.client_port, &p), 0);
  char ep[64];
  tproxy_endpoint(p, ep, sizeof(ep));
  memset(&g_states, 0, sizeof(g_states));
  etcdreg_client_t *c = itest_client(&loop, ep, fast_keepalive);
  itest_put(&loop, c, "/bh/k", "before", NULL);

  tproxy_set_mode(p, TPROXY_BLACKHOLE);
  uint64_t t0 = now_ms();
  itest_result_t r = {0};
  etcdreg_range_opts_t o = {.timeout_ms = 30000};
  assert_int_equal(etcdreg_range(c, "/bh/k", 5, &o, itest_on_range, &r, NULL), 0);
  /* Wait for the client to notice (state: reconnecting), then let traffic through. */
  int noticed = 0;
  while (!noticed && now_ms() - t0 < 20000) {
    uv_run(&loop, UV_RUN_ONCE);
    noticed = g_states.reconnecting_at != 0;
  }
  assert_true(noticed);
  uint64_t detect_ms = g_states.reconnecting_at - t0;
  int saw_ping = 0;
  for (int i = 0; i < g_states.n; i++)
    if (g_states.states[i] == ETCDREG_STATE_RECONNECTING && strstr(g_states.details[i], "keepalive ping")) saw_ping = 1;
  assert_true(saw_ping);
  /* interval (1 s) + timeout (1 s), plus scheduling slack for ASan on busy cores. */
  assert_true(detect_ms >= 1000);
  assert_true(detect_ms < 2000 + 3000);
  uv_timer_t pass;
  uv_timer_init(&loop, &pass);
  pass.data = p;
  uv_timer_start(&pass, pass_again_cb, 50, 0);
  itest_run_until(&loop, &r.done, 30000);
  uv_close((uv_handle_t *)&pass, NULL);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.kvs[0].value, "before");
  itest_result_reset(&r);
  etcdreg_client_close(c, NULL, NULL);
  close_proxy(&loop, p);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void with_states(etcdreg_client_options_t *o) { o->on_state = on_state; }

static int state_index(etcdreg_conn_state_t st, int from) {
  for (int i = from; i < g_states.n; i++)
    if (g_states.states[i] == st) return i;
  return -1;
}

/* connecting -> ready -> reconnecting (with the error) -> ... -> ready -> closed */
static void test_state_callback(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  tproxy_t *p;
  assert_int_equal(tproxy_start(&loop, g_etcd.client_port, &p), 0);
  char ep[64];
  tproxy_endpoint(p, ep, sizeof(ep));
  memset(&g_states, 0, sizeof(g_states));
  etcdreg_client_t *c = itest_client(&loop, ep, with_states);
  assert_int_equal(etcdreg_client_state(c), ETCDREG_STATE_IDLE);
  itest_put(&loop, c, "/st/k", "1", NULL);
  assert_int_equal(etcdreg_client_state(c), ETCDREG_STATE_READY);
  tproxy_reset(p);
  itest_result_t r = {0};
  itest_range(&loop, c, "/st/k", NULL, &r); /* reconnects */
  assert_int_equal(r.status, 0);
  itest_result_reset(&r);
  int closed = 0;
  etcdreg_client_close(c, itest_on_closed, &closed);
  itest_run_until(&loop, &closed, 10000);
  int i_conn = state_index(ETCDREG_STATE_CONNECTING, 0);
  int i_ready = state_index(ETCDREG_STATE_READY, i_conn + 1);
  int i_re = state_index(ETCDREG_STATE_RECONNECTING, i_ready + 1);
  int i_ready2 = state_index(ETCDREG_STATE_READY, i_re + 1);
  int i_closed = state_index(ETCDREG_STATE_CLOSED, i_ready2 + 1);
  assert_true(i_conn == 0);
  assert_true(i_ready > i_conn);
  assert_true(i_re > i_ready);
  assert_int_equal(g_states.errs[i_re], ETCDREG_EUNAVAILABLE);
  assert_true(strlen(g_states.details[i_re]) > 0);
  assert_true(i_ready2 > i_re);
  assert_int_equal(i_closed, g_states.n - 1);
  close_proxy(&loop, p);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cut_during_puts),
      cmocka_unit_test(test_blackhole_detected_by_ping),
      cmocka_unit_test(test_state_callback),
  };
  return cmocka_run_group_tests_name("reconnect", tests, reconnect_up, itest_etcd_down);
}
