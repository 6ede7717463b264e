/* Shared helpers for the integration suites: one etcd per suite process, a loop per
 * test, and "run the loop until this flag is set (or fail after a generous timeout)". */
#ifndef ETCDREG_ITEST_H
#define ETCDREG_ITEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <uv.h>

#include "etcd_harness.h"
#include "etcdreg.h"

static th_etcd_t g_etcd;

/* ETCDREG_TEST_TLS=1 runs a suite over mutual TLS: etcd serves https with test
 * certificates and requires client certificates; itest_client() connects with them. */
static char g_tls_dir[256];

static inline int itest_tls(void) {
  const char *v = getenv("ETCDREG_TEST_TLS");
  return v && *v && strcmp(v, "0") != 0;
}

static inline int itest_start(th_etcd_t *e, const char *const *flags) {
  if (!itest_tls()) return th_etcd_start(e, flags);
  if (!g_tls_dir[0]) {
    snprintf(g_tls_dir, sizeof(g_tls_dir), "/tmp/etcdreg-test-certs-XXXXXX");
    if (!mkdtemp(g_tls_dir) || th_make_certs(g_tls_dir) != 0) return -1;
  }
  return th_etcd_start_tls(e, flags, g_tls_dir, "server", 1);
}

static inline int itest_etcd_up(void **state) {
  (void)state;
  return itest_start(&g_etcd, NULL) == 0 ? 0 : -1;
}

static inline int itest_etcd_down(void **state) {
  (void)state;
  th_etcd_stop(&g_etcd);
  if (g_tls_dir[0]) {
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tls_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tls_dir);
    g_tls_dir[0] = 0;
  }
  return 0;
}

static inline void itest_watchdog_cb(uv_timer_t *t) { *(int *)t->data = 1; }

/* Runs `loop` until *flag becomes nonzero; fails the test after timeout_ms (which must be
 * generous: it only guards against hangs, it never measures). */
static inline void itest_run_until(uv_loop_t *loop, const int *flag, uint64_t timeout_ms) {
  int expired = 0;
  uv_timer_t watchdog;
  uv_timer_init(loop, &watchdog);
  watchdog.data = &expired;
  uv_timer_start(&watchdog, itest_watchdog_cb, timeout_ms, 0);
  while (!*flag && !expired) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&watchdog, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  if (!*flag) fail_msg("timed out after %llu ms waiting for a callback", (unsigned long long)timeout_ms);
}

static inline etcdreg_client_t * itest_client(uv_loop_t *loop, const char *endpoint,
                                      void (*tweak)(etcdreg_client_options_t *)) {
  etcdreg_client_options_t opt;
  etcdreg_client_options_init(&opt);
  const char *eps[] = {endpoint, NULL};
  opt.endpoints = eps;
  char ca[300], cert[300], key[300];
  if (itest_tls() && g_tls_dir[0]) {
    snprintf(ca, sizeof(ca), "%s/ca.pem", g_tls_dir);
    snprintf(cert, sizeof(cert), "%s/client.pem", g_tls_dir);
    snprintf(key, sizeof(key), "%s/client.key", g_tls_dir);
    opt.tls_ca_file = ca; /* bare host:port endpoints then use TLS */
    opt.tls_cert_file = cert;
    opt.tls_key_file = key;
  }
  if (tweak) tweak(&opt);
  etcdreg_client_t *c = NULL;
  int rv = etcdreg_client_new(loop, &opt, &c);
  if (rv) fail_msg("etcdreg_client_new: %s: %s", etcdreg_strerror(rv), etcdreg_last_option_error());
  return c;
}

static inline void itest_on_closed(etcdreg_client_t *c, void *data) {
  (void)c;
  *(int *)data = 1;
}

/* Closes the client, runs the loop dry and checks that nothing was left open. */
static inline void itest_close(uv_loop_t *loop, etcdreg_client_t *c) {
  int closed = 0;
  assert_int_equal(etcdreg_client_close(c, itest_on_closed, &closed), 0);
  itest_run_until(loop, &closed, 10000);
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(loop), 0);
}

/* Captured results, copied out of the borrowed callback data. */
#define ITEST_MAX_KVS 64
typedef struct {
  char key[256];
  char *value; /* malloc'd copy */
  size_t value_len;
  int64_t create_revision, mod_revision, version, lease;
} itest_kv_t;

typedef struct {
  int done;
  int calls;   /* how many times the callback fired: must be 1 */
  int status;
  int grpc_status;
  char message[512];
  int64_t revision;
  size_t kv_count;
  int more;
  int64_t count;
  int64_t deleted;
  int succeeded;
  itest_kv_t kvs[ITEST_MAX_KVS];
  int has_prev;
  etcdreg_txn_result_t txn_copy_unused;
} itest_result_t;

static inline void itest_copy_kv(itest_kv_t *dst, const etcdreg_kv_t *kv) {
  snprintf(dst->key, sizeof(dst->key), "%.*s", (int)kv->key_len, (const char *)kv->key);
  dst->value = malloc(kv->value_len + 1);
  memcpy(dst->value, kv->value, kv->value_len);
  dst->value[kv->value_len] = 0;
  dst->value_len = kv->value_len;
  dst->create_revision = kv->create_revision;
  dst->mod_revision = kv->mod_revision;
  dst->version = kv->version;
  dst->lease = kv->lease;
}

static inline void itest_result_reset(itest_result_t *r) {
  for (size_t i = 0; i < ITEST_MAX_KVS; i++) free(r->kvs[i].value);
  memset(r, 0, sizeof(*r));
}

static inline void itest_begin(itest_result_t *r, etcdreg_request_t *req, int status) {
  r->calls++;
  r->done = 1;
  r->status = status;
  r->grpc_status = etcdreg_request_grpc_status(req);
  snprintf(r->message, sizeof(r->message), "%s", etcdreg_request_message(req));
}

static inline void itest_on_range(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  itest_result_t *r = data;
  itest_begin(r, req, status);
  if (status) return;
  r->revision = res->header.revision;
  r->kv_count = res->kv_count;
  r->more = res->more;
  r->count = res->count;
  for (size_t i = 0; i < res->kv_count && i < ITEST_MAX_KVS; i++) itest_copy_kv(&r->kvs[i], &res->kvs[i]);
}

static inline void itest_on_put(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  itest_result_t *r = data;
  itest_begin(r, req, status);
  if (status) return;
  r->revision = res->header.revision;
  if (res->prev_kv) {
    r->has_prev = 1;
    itest_copy_kv(&r->kvs[0], res->prev_kv);
  }
}

static inline void itest_on_delete(etcdreg_request_t *req, int status, const etcdreg_delete_result_t *res, void *data) {
  itest_result_t *r = data;
  itest_begin(r, req, status);
  if (status) return;
  r->revision = res->header.revision;
  r->deleted = res->deleted;
  r->kv_count = res->prev_kv_count;
  for (size_t i = 0; i < res->prev_kv_count && i < ITEST_MAX_KVS; i++) itest_copy_kv(&r->kvs[i], &res->prev_kvs[i]);
}

/* Synchronous-looking wrappers for test setup: they run the loop until the answer. */
static inline int64_t itest_put(uv_loop_t *loop, etcdreg_client_t *c, const char *k, const char *v,
                         const etcdreg_put_opts_t *o) {
  itest_result_t r = {0};
  assert_int_equal(etcdreg_put(c, k, strlen(k), v, strlen(v), o, itest_on_put, &r, NULL), 0);
  itest_run_until(loop, &r.done, 15000);
  if (r.status) fail_msg("put %s: %s (%s)", k, etcdreg_strerror(r.status), r.message);
  int64_t rev = r.revision;
  itest_result_reset(&r);
  return rev;
}

static inline void itest_range(uv_loop_t *loop, etcdreg_client_t *c, const char *k,
                        const etcdreg_range_opts_t *o, itest_result_t *r) {
  itest_result_reset(r);
  assert_int_equal(etcdreg_range(c, k, strlen(k), o, itest_on_range, r, NULL), 0);
  itest_run_until(loop, &r->done, 15000);
  assert_int_equal(r->calls, 1);
}

#endif
