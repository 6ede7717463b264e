/* Auth against a real etcd: root, and a user whose role covers /app/ only. Tokens are
 * short-lived (--auth-token-ttl 2) so idling shows expiry and transparent renewal. */
#include <unistd.h>

#include "itest.h"
#include "tproxy.h"

static int auth_up(void **state) {
  (void)state;
  const char *flags[] = {"--auth-token", "simple", "--auth-token-ttl", "2", NULL};
  if (th_etcd_start(&g_etcd, flags) != 0) return -1;
  const char *steps[][12] = {
      {"user", "add", "root:rootpw", NULL},
      {"auth", "enable", NULL},
      {"--user", "root:rootpw", "user", "add", "alice:alicepw", NULL},
      {"--user", "root:rootpw", "role", "add", "app-rw", NULL},
      {"--user", "root:rootpw", "role", "grant-permission", "app-rw", "readwrite", "/app/", "--prefix=true", NULL},
      {"--user", "root:rootpw", "user", "grant-role", "alice", "app-rw", NULL},
  };
  for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
    if (th_etcdctl(&g_etcd, steps[i]) != 0) return -1;
  return 0;
}

static const char *g_user, *g_password;
static int g_reauth_logs, g_watch_refused_logs;

static void on_log(etcdreg_log_level_t level, const char *msg, void *data) {
  (void)level;
  (void)data;
  if (strstr(msg, "authenticating again")) g_reauth_logs++;
  if (strstr(msg, "watch create refused with a stale auth token")) g_watch_refused_logs++;
}

static void as_user(etcdreg_client_options_t *o) {
  o->username = g_user;
  o->password = g_password;
  o->log = on_log;
}

static etcdreg_client_t *client_as(uv_loop_t *loop, const char *user, const char *password) {
  g_user = user;
  g_password = password;
  return itest_client(loop, g_etcd.endpoint, as_user);
}

static void test_root_reads_and_writes(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = client_as(&loop, "root", "rootpw");
  itest_put(&loop, c, "/anything", "v", NULL);
  itest_result_t r = {0};
  itest_range(&loop, c, "/anything", NULL, &r);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.kvs[0].value, "v");
  itest_result_reset(&r);
  itest_close(&loop, c);
}

static void test_wrong_password(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = client_as(&loop, "alice", "not-her-password");
  itest_result_t r = {0}, w = {0};
  assert_int_equal(etcdreg_range(c, "/app/x", 6, NULL, itest_on_range, &r, NULL), 0);
  assert_int_equal(etcdreg_put(c, "/app/x", 6, "v", 1, NULL, itest_on_put, &w, NULL), 0);
  itest_run_until(&loop, &r.done, 15000);
  itest_run_until(&loop, &w.done, 15000);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, ETCDREG_EAUTHFAILED);
  assert_int_equal(w.status, ETCDREG_EAUTHFAILED);
  assert_non_null(strstr(r.message, "authentication failed"));
  itest_result_reset(&r);
  itest_result_reset(&w);
  itest_close(&loop, c);
}

static void test_permission_denied(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = client_as(&loop, "alice", "alicepw");
  itest_put(&loop, c, "/app/mine", "ok", NULL);
  itest_result_t w = {0};
  assert_int_equal(etcdreg_put(c, "/other/x", 8, "v", 1, NULL, itest_on_put, &w, NULL), 0);
  itest_run_until(&loop, &w.done, 15000);
  assert_int_equal(w.status, ETCDREG_EPERM);
  assert_int_equal(w.grpc_status, 7);
  assert_non_null(strstr(w.message, "permission denied"));
  itest_result_t r = {0};
  itest_range(&loop, c, "/other/x", NULL, &r);
  assert_int_equal(r.status, ETCDREG_EPERM);
  itest_result_reset(&r);
  itest_result_reset(&w);
  itest_close(&loop, c);
}

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

static void test_token_expiry_renewed(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  g_reauth_logs = 0;
  etcdreg_client_t *c = client_as(&loop, "alice", "alicepw");
  itest_put(&loop, c, "/app/expiry", "1", NULL);
  /* Idle past the token TTL (2 s; etcd checks expiry once a second). */
  idle(&loop, 4500);
  itest_result_t r = {0};
  itest_range(&loop, c, "/app/expiry", NULL, &r);
  assert_int_equal(r.status, 0); /* renewed transparently */
  assert_string_equal(r.kvs[0].value, "1");
  assert_true(g_reauth_logs >= 1);
  /* And writes too, after another expiry. */
  idle(&loop, 4500);
  itest_put(&loop, c, "/app/expiry", "2", NULL);
  assert_true(g_reauth_logs >= 2);
  itest_result_reset(&r);
  itest_close(&loop, c);
}

typedef struct {
  int ready, events, ended;
  char reason[200];
} alive_t;

static void aw_ready(etcdreg_watch_t *w, int64_t rev, void *data) {
  (void)w;
  (void)rev;
  ((alive_t *)data)->ready = 1;
}
static void aw_events(etcdreg_watch_t *w, int64_t rev, const etcdreg_watch_event_t *ev, size_t n, void *data) {
  (void)w;
  (void)rev;
  (void)ev;
  ((alive_t *)data)->events += (int)n;
}
static void aw_ended(etcdreg_watch_t *w, int status, int64_t cr, const char *reason, void *data) {
  (void)w;
  (void)status;
  (void)cr;
  alive_t *a = data;
  a->ended = 1;
  snprintf(a->reason, sizeof(a->reason), "%s", reason);
}

static void proxy_closed(void *data) { *(int *)data = 1; }

/* A live watch outlives its token: after the token expired the connection is cut, the
 * watch is re-created on a new stream (etcd refuses the stale token in-band, the client
 * authenticates again) and events keep coming, none lost. */
static void test_watch_survives_token_expiry(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  tproxy_t *p;
  assert_int_equal(tproxy_start(&loop, g_etcd.client_port, &p), 0);
  char ep[64];
  tproxy_endpoint(p, ep, sizeof(ep));
  g_user = "alice";
  g_password = "alicepw";
  g_reauth_logs = g_watch_refused_logs = 0;
  etcdreg_client_t *wc = itest_client(&loop, ep, as_user);
  etcdreg_client_t *writer = client_as(&loop, "alice", "alicepw");
  alive_t a = {0};
  etcdreg_watch_cbs_t cbs = {.ready = aw_ready, .events = aw_events, .ended = aw_ended};
  etcdreg_watch_opts_t o = {.prefix = 1};
  assert_int_equal(etcdreg_watch_start(wc, "/app/live/", 10, &o, &cbs, &a, NULL), 0);
  itest_run_until(&loop, &a.ready, 15000);
  itest_put(&loop, writer, "/app/live/1", "a", NULL);
  while (a.events < 1 && !a.ended) uv_run(&loop, UV_RUN_ONCE);
  idle(&loop, 4500); /* the watch client's token expires */
  tproxy_cut(p);
  itest_put(&loop, writer, "/app/live/2", "b", NULL);
  itest_put(&loop, writer, "/app/live/3", "c", NULL);
  int expired = 0;
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = &expired;
  uv_timer_start(&t, itest_watchdog_cb, 20000, 0);
  while (a.events < 3 && !a.ended && !expired) uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  if (a.ended) fail_msg("watch ended: %s", a.reason);
  assert_int_equal(a.events, 3);
  assert_true(g_watch_refused_logs >= 1); /* the in-band refusal and refresh really happened */
  int closed = 0;
  etcdreg_client_close(wc, NULL, NULL);
  etcdreg_client_close(writer, NULL, NULL);
  tproxy_close(p, proxy_closed, &closed);
  itest_run_until(&loop, &closed, 10000);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_root_reads_and_writes),
      cmocka_unit_test(test_wrong_password),
      cmocka_unit_test(test_permission_denied),
      cmocka_unit_test(test_token_expiry_renewed),
      cmocka_unit_test(test_watch_survives_token_expiry),
  };
  return cmocka_run_group_tests_name("auth", tests, auth_up, itest_etcd_down);
}
