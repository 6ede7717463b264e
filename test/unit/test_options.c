/* Unit tests for client options, endpoint parsing, argument validation of the KV calls
 * and etcdreg_prefix_end (src/etcd/client.c, src/etcd/kv.c). No server: every call
 * below is rejected before a connection would be made, which the tests check. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "etcd/internal.h"
#include "etcdreg/client.h"
#include "etcdreg/error.h"

/* ---- helpers ---- */

static void close_cb(etcdreg_client_t *c, void *data) {
  (void)c;
  (*(int *)data)++;
}

/* Closes `c`, runs the loop until the close callback fired, and checks it fired once. */
static void close_and_drain(uv_loop_t *loop, etcdreg_client_t *c) {
  int closed = 0;
  assert_int_equal(etcdreg_client_close(c, close_cb, &closed), 0);
  assert_int_equal(closed, 0); /* from the loop, not from inside close */
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
}

static int new_client(uv_loop_t *loop, const char *ep, etcdreg_client_t **out) {
  const char *eps[] = {ep, NULL};
  etcdreg_client_options_t o;
  etcdreg_client_options_init(&o);
  o.endpoints = eps;
  return etcdreg_client_new(loop, &o, out);
}

/* ---- options ---- */

static void test_options_defaults(void **state) {
  (void)state;
  etcdreg_client_options_t o;
  memset(&o, 0xab, sizeof(o));
  etcdreg_client_options_init(&o);
  assert_null(o.endpoints);
  assert_int_equal(o.dial_timeout_ms, 5000);
  assert_int_equal(o.request_timeout_ms, 10000);
  assert_int_equal(o.max_recv_msg_bytes, 64u * 1024 * 1024);
  assert_int_equal(o.stream_window_bytes, 4u * 1024 * 1024);
  assert_int_equal(o.conn_window_bytes, 16u * 1024 * 1024);
  assert_null(o.user_agent);
  assert_int_equal(o.max_retries, 10);
  assert_int_equal(o.backoff_initial_ms, 100);
  assert_true(o.backoff_multiplier == 1.6);
  assert_int_equal(o.backoff_max_ms, 10000);
  assert_true(o.backoff_jitter == 0.2);
  assert_int_equal(o.keepalive_interval_ms, 30000);
  assert_int_equal(o.keepalive_timeout_ms, 10000);
  assert_null(o.username);
  assert_null(o.password);
  assert_null(o.on_state);
  assert_null(o.log);
  assert_null(o.callback_data);
  etcdreg_client_options_init(NULL); /* harmless */
  assert_string_equal(etcdreg_version(), ETCDREG_VERSION_STRING);
}

static void expect_rejected(uv_loop_t *loop, const etcdreg_client_options_t *o, const char *what) {
  etcdreg_client_t *c = (etcdreg_client_t *)(uintptr_t)0x1;
  int rv = etcdreg_client_new(loop, o, &c);
  if (rv != ETCDREG_EINVAL) fail_msg("%s: etcdreg_client_new returned %s, expected EINVAL", what, etcdreg_err_name(rv));
  const char *why = etcdreg_last_option_error();
  if (!why || !*why) fail_msg("%s: no option error message", what);
  if (c != (etcdreg_client_t *)(uintptr_t)0x1) fail_msg("%s: *out written on failure", what);
}

static void test_client_new_rejects(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  etcdreg_client_options_t o;
  etcdreg_client_t *c = NULL;
  const char *good[] = {"127.0.0.1:2379", NULL};

  /* Missing pieces. */
  etcdreg_client_options_init(&o);
  o.endpoints = good;
  assert_int_equal(etcdreg_client_new(NULL, &o, &c), ETCDREG_EINVAL);
  assert_true(strlen(etcdreg_last_option_error()) > 0);
  assert_int_equal(etcdreg_client_new(&loop, NULL, &c), ETCDREG_EINVAL);
  assert_true(strlen(etcdreg_last_option_error()) > 0);
  assert_int_equal(etcdreg_client_new(&loop, &o, NULL), ETCDREG_EINVAL);
  assert_true(strlen(etcdreg_last_option_error()) > 0);

  etcdreg_client_options_init(&o);
  expect_rejected(&loop, &o, "no endpoints");
  const char *empty_list[] = {NULL};
  o.endpoints = empty_list;
  expect_rejected(&loop, &o, "empty endpoint list");

  static const char *bad_eps[] = {
      "", "nocolon", "host:", ":2379", "host:0", "host:65536", "host:12ab", "host:-1",
      "host:+1", "host: 1", "host:99999999999999999999", "[::1]", "[::1]:", "[::1]2379",
      "[::1", "[]:1", "::1:2379", "a:b:1", "ftp://h:1", "grpc://h:1", "https://h:",
      "unix://", "unixs://", "http://", "http://:1", "http://h", "http://h:1/x", "/"};
  for (size_t i = 0; i < sizeof(bad_eps) / sizeof(bad_eps[0]); i++) {
    const char *eps[] = {bad_eps[i], NULL};
    etcdreg_client_options_init(&o);
    o.endpoints = eps;
    expect_rejected(&loop, &o, bad_eps[i]);
  }
  /* Unknown schemes say which schemes there are. */
  {
    const char *eps[] = {"grpc://h:1", NULL};
    etcdreg_client_options_init(&o);
    o.endpoints = eps;
    expect_rejected(&loop, &o, "grpc");
    assert_non_null(strstr(etcdreg_last_option_error(), "https://"));
  }
  /* A bad endpoint after good ones: nothing leaks (ASan), still EINVAL. */
  {
    const char *eps[] = {"127.0.0.1:2379", "[::1]:2379", "host:0", NULL};
    etcdreg_client_options_init(&o);
    o.endpoints = eps;
    expect_rejected(&loop, &o, "third endpoint bad");
    assert_non_null(strstr(etcdreg_last_option_error(), "host:0"));
  }

  /* Limits. */
  etcdreg_client_options_init(&o);
  o.endpoints = good;
  o.max_recv_msg_bytes = 10;
  expect_rejected(&loop, &o, "max_recv_msg_bytes 10");
  etcdreg_client_options_init(&o);
  o.endpoints = good;
  o.stream_window_bytes = 100;
  expect_rejected(&loop, &o, "stream window 100");
  etcdreg_client_options_init(&o);
  o.endpoints = good;
  o.conn_window_bytes = 100;
  expect_rejected(&loop, &o, "conn window 100");
  etcdreg_client_options_init(&o);
  o.endpoints = good;
  o.stream_window_bytes = 0x80000000u;
  expect_rejected(&loop, &o, "stream window 2^31");
  etcdreg_client_options_init(&o);
  o.endpoints = good;
  o.conn_window_bytes = 0xffffffffu;
  expect_rejected(&loop, &o, "conn window 2^32-1");

  /* Retry, backoff, keepalive and auth options. */
  static const char *bad_opts[] = {"max_retries -1",         "backoff_multiplier 0.5",
                                    "backoff_jitter -0.1",    "backoff_jitter 1.5",
                                    "backoff_initial > max",  "keepalive 50 ms",
                                    "password without username", "empty username"};
  for (size_t i = 0; i < sizeof(bad_opts) / sizeof(bad_opts[0]); i++) {
    etcdreg_client_options_init(&o);
    o.endpoints = good;
    switch (i) {
    case 0: o.max_retries = -1; break;
    case 1: o.backoff_multiplier = 0.5; break;
    case 2: o.backoff_jitter = -0.1; break;
    case 3: o.backoff_jitter = 1.5; break;
    case 4: o.backoff_initial_ms = 20000; o.backoff_max_ms = 1000; break;
    case 5: o.keepalive_interval_ms = 50; break;
    case 6: o.password = "secret"; break;
    case 7: o.username = ""; o.password = "secret"; break;
    default: break;
    }
    expect_rejected(&loop, &o, bad_opts[i]);
  }

  /* Nothing was created: no handle is left on the loop. */
  assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_client_new_accepts(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  static const char *eps[] = {"127.0.0.1:2379", "http://127.0.0.1:2379", "http://localhost:2379/",
                              "[::1]:2379", "my-host.example:1", "h:65535", "http://[::1]:1",
                              "unix://x", "unix:///tmp/etcdreg-test-no-such.sock"};
  for (size_t i = 0; i < sizeof(eps) / sizeof(eps[0]); i++) {
    etcdreg_client_t *c = NULL;
    int rv = new_client(&loop, eps[i], &c);
    if (rv != 0) fail_msg("\"%s\": %s (%s)", eps[i], etcdreg_err_name(rv), etcdreg_last_option_error());
    assert_non_null(c);
    assert_string_equal(etcdreg_last_option_error(), "");
    assert_ptr_equal(etcdreg_client_loop(c), &loop);
    assert_null(c->conns); /* connects lazily */
    assert_int_equal(etcdreg_client_state(c), ETCDREG_STATE_IDLE);
    close_and_drain(&loop, c);
  }
  /* Several endpoints, zeroed numeric options take the defaults, strings are copied. */
  char ep1[] = "10.0.0.1:2379", ep2[] = "[fd00::2]:2380", ua[] = "my-agent/1";
  const char *list[] = {ep1, ep2, NULL};
  etcdreg_client_options_t o;
  memset(&o, 0, sizeof(o));
  o.endpoints = list;
  o.user_agent = ua;
  etcdreg_client_t *c = NULL;
  assert_int_equal(etcdreg_client_new(&loop, &o, &c), 0);
  memset(ep1, 'x', sizeof(ep1) - 1);
  memset(ep2, 'x', sizeof(ep2) - 1);
  memset(ua, 'x', sizeof(ua) - 1);
  assert_int_equal(c->endpoint_count, 2);
  assert_string_equal(c->endpoints[0].host, "10.0.0.1");
  assert_string_equal(c->endpoints[1].host, "fd00::2");
  assert_string_equal(c->endpoints[1].authority, "[fd00::2]:2380");
  assert_string_equal(c->user_agent, "my-agent/1");
  assert_int_equal(c->dial_timeout_ms, 5000);
  assert_int_equal(c->request_timeout_ms, 10000);
  assert_int_equal(c->max_recv_msg, 64u * 1024 * 1024);
  assert_int_equal(c->stream_window, 4u * 1024 * 1024);
  assert_int_equal(c->conn_window, 16u * 1024 * 1024);
  close_and_drain(&loop, c);

  /* Default user agent names the library and its version; close without a callback. */
  assert_int_equal(new_client(&loop, "127.0.0.1:2379", &c), 0);
  assert_non_null(strstr(c->user_agent, "etcdreg/" ETCDREG_VERSION_STRING));
  assert_int_equal(etcdreg_client_close(c, NULL, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);

  assert_int_equal(etcdreg_client_close(NULL, close_cb, NULL), ETCDREG_EINVAL);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* Regression: NaN used to pass validate_options() and reach a NaN-to-integer conversion. */
static void test_client_new_rejects_nan_backoff(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  const char *good[] = {"127.0.0.1:2379", NULL};
  etcdreg_client_options_t o;
  etcdreg_client_options_init(&o);
  o.endpoints = good;
  o.backoff_multiplier = (double)NAN;
  etcdreg_client_t *c = NULL;
  int rv = etcdreg_client_new(&loop, &o, &c);
  if (rv == 0) close_and_drain(&loop, c);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(rv, ETCDREG_EINVAL);
}

/* ---- endpoint parsing ---- */

static void expect_parse(const char *s, const char *host, unsigned port, const char *authority) {
  etcdreg_endpoint_t ep;
  char why[256] = "";
  int rv = etcdreg__endpoint_parse(s, &ep, why, sizeof(why));
  if (rv != 0) fail_msg("parse(\"%s\") = %s: %s", s, etcdreg_err_name(rv), why);
  assert_non_null(ep.host);
  assert_non_null(ep.authority);
  if (strcmp(ep.host, host) != 0 || ep.port != port || strcmp(ep.authority, authority) != 0) {
    char msg[300];
    snprintf(msg, sizeof(msg), "parse(\"%s\") = host \"%s\" port %u authority \"%s\"", s, ep.host,
             ep.port, ep.authority);
    etcdreg__endpoint_free(&ep);
    fail_msg("%s", msg);
  }
  assert_int_equal(ep.tls, 0);
  assert_null(ep.unix_path);
  assert_non_null(ep.text);
  assert_string_equal(ep.text, s);
  etcdreg__endpoint_free(&ep);
  assert_null(ep.host);
  assert_null(ep.authority);
}

static void test_endpoint_parse_accepts(void **state) {
  (void)state;
  expect_parse("127.0.0.1:2379", "127.0.0.1", 2379, "127.0.0.1:2379");
  expect_parse("http://127.0.0.1:2379", "127.0.0.1", 2379, "127.0.0.1:2379");
  expect_parse("http://localhost:2379/", "localhost", 2379, "localhost:2379");
  expect_parse("[::1]:2379", "::1", 2379, "[::1]:2379");
  expect_parse("http://[::1]:2379", "::1", 2379, "[::1]:2379");
  expect_parse("[2001:db8::1]:65535", "2001:db8::1", 65535, "[2001:db8::1]:65535");
  expect_parse("my-host.example:1", "my-host.example", 1, "my-host.example:1");
  expect_parse("h:2379//", "h", 2379, "h:2379");

  /* unix sockets: a path, no host; :authority is "localhost". */
  etcdreg_endpoint_t ep;
  char why[256] = "";
  assert_int_equal(etcdreg__endpoint_parse("unix:///run/etcd.sock", &ep, why, sizeof(why)), 0);
  assert_null(ep.host);
  assert_non_null(ep.unix_path);
  assert_string_equal(ep.unix_path, "/run/etcd.sock");
  assert_string_equal(ep.authority, "localhost");
  assert_string_equal(ep.text, "unix:///run/etcd.sock");
  etcdreg__endpoint_free(&ep);
  assert_int_equal(etcdreg__endpoint_parse("unix://x", &ep, why, sizeof(why)), 0);
  assert_string_equal(ep.unix_path, "x");
  etcdreg__endpoint_free(&ep);
}

static void expect_parse_fails(const char *s, int want) {
  etcdreg_endpoint_t ep;
  char why[256] = "";
  int rv = etcdreg__endpoint_parse(s, &ep, why, sizeof(why));
  if (rv != want) {
    if (rv == 0) etcdreg__endpoint_free(&ep);
    fail_msg("parse(\"%s\") = %s, expected %s", s ? s : "(null)", etcdreg_err_name(rv), etcdreg_err_name(want));
  }
  if (!why[0]) fail_msg("parse(\"%s\"): no explanation", s ? s : "(null)");
  assert_null(ep.host);
  assert_null(ep.authority);
}

static void test_endpoint_parse_rejects(void **state) {
  (void)state;
  expect_parse_fails(NULL, ETCDREG_EINVAL);
  expect_parse_fails("", ETCDREG_EINVAL);
  expect_parse_fails("nocolon", ETCDREG_EINVAL);
  expect_parse_fails("host:", ETCDREG_EINVAL);
  expect_parse_fails(":2379", ETCDREG_EINVAL);
  expect_parse_fails("host:0", ETCDREG_EINVAL);
  expect_parse_fails("host:65536", ETCDREG_EINVAL);
  expect_parse_fails("host:12ab", ETCDREG_EINVAL);
  expect_parse_fails("[::1]", ETCDREG_EINVAL);
  expect_parse_fails("::1:2379", ETCDREG_EINVAL);
  expect_parse_fails("ftp://h:1", ETCDREG_EINVAL);
  expect_parse_fails("https://h:", ETCDREG_EINVAL);
  expect_parse_fails("unixs://", ETCDREG_EINVAL);
  expect_parse_fails("unix://", ETCDREG_EINVAL);
  {
    etcdreg_endpoint_t ep;
    char why[256];
    assert_int_equal(etcdreg__endpoint_parse("https://h:1", &ep, why, sizeof(why)), 0);
    assert_true(ep.tls);
    assert_string_equal(ep.host, "h");
    etcdreg__endpoint_free(&ep);
    assert_int_equal(etcdreg__endpoint_parse("unixs:///run/e.sock", &ep, why, sizeof(why)), 0);
    assert_true(ep.tls);
    assert_string_equal(ep.unix_path, "/run/e.sock");
    etcdreg__endpoint_free(&ep);
  }
}

/* ---- argument validation on a live client ---- */

static int cb_calls;
static void range_cb(etcdreg_request_t *r, int st, const etcdreg_range_result_t *res, void *d) {
  (void)r, (void)st, (void)res, (void)d;
  cb_calls++;
}
static void put_cb(etcdreg_request_t *r, int st, const etcdreg_put_result_t *res, void *d) {
  (void)r, (void)st, (void)res, (void)d;
  cb_calls++;
}
static void delete_cb(etcdreg_request_t *r, int st, const etcdreg_delete_result_t *res, void *d) {
  (void)r, (void)st, (void)res, (void)d;
  cb_calls++;
}
static void txn_cb(etcdreg_request_t *r, int st, const etcdreg_txn_result_t *res, void *d) {
  (void)r, (void)st, (void)res, (void)d;
  cb_calls++;
}
static void compact_cb(etcdreg_request_t *r, int st, const etcdreg_compact_result_t *res, void *d) {
  (void)r, (void)st, (void)res, (void)d;
  cb_calls++;
}

#define EXPECT_RV(call, want)                                                                  \
  do {                                                                                         \
    etcdreg_request_t *req_ = (etcdreg_request_t *)(uintptr_t)0x1;                             \
    (void)req_;                                                                                \
    int rv_ = (call);                                                                          \
    if (rv_ != (want))                                                                         \
      fail_msg("%s = %s, expected %s", #call, etcdreg_err_name(rv_), etcdreg_err_name(want)); \
  } while (0)

static void test_bad_arguments(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  etcdreg_client_t *c = NULL;
  assert_int_equal(new_client(&loop, "127.0.0.1:1", &c), 0);
  cb_calls = 0;
  etcdreg_request_t *req = (etcdreg_request_t *)(uintptr_t)0x1;

  /* put */
  EXPECT_RV(etcdreg_put(c, "k", 0, "v", 1, NULL, put_cb, NULL, &req), ETCDREG_EINVAL);
  EXPECT_RV(etcdreg_put(c, "k", 1, "v", 1, NULL, NULL, NULL, &req), ETCDREG_EINVAL);
  EXPECT_RV(etcdreg_put(NULL, "k", 1, "v", 1, NULL, put_cb, NULL, &req), ETCDREG_EINVAL);
  EXPECT_RV(etcdreg_put(c, NULL, 1, "v", 1, NULL, put_cb, NULL, &req), ETCDREG_EINVAL);
  EXPECT_RV(etcdreg_put(c, "k", 1, NULL, 1, NULL, put_cb, NULL, &req), ETCDREG_EINVAL);
  {
    etcdreg_put_opts_t po = {0};
    po.ignore_value = 1;
    EXPECT_RV(etcdreg_put(c, "k", 1, "v", 1, &po, put_cb, NULL, &req), ETCDREG_EINVAL);
    memset(&po, 0, sizeof(po));
    po.ignore_lease = 1;
    po.lease = 5;
    EXPECT_RV(etcdreg_put(c, "k", 1, "v", 1, &po, put_cb, NULL, &req), ETCDREG_EINVAL);
    memset(&po, 0, sizeof(po));
    po.lease = -1;
    EXPECT_RV(etcdreg_put(c, "k", 1, "v", 1, &po, put_cb, NULL, &req), ETCDREG_EINVAL);
  }

  /* range */
  EXPECT_RV(etcdreg_range(c, "", 0, NULL, range_cb, NULL, &req), ETCDREG_EINVAL);
  EXPECT_RV(etcdreg_range(c, NULL, 0, NULL, range_cb, NULL, &req), ETCDREG_EINVAL);
  EXPECT_RV(etcdreg_range(c, "k", 1, NULL, NULL, NULL, &req), ETCDREG_EINVAL);
  EXPECT_RV(etcdreg_range(c, NULL, 3, NULL, range_cb, NULL, &req), ETCDREG_EINVAL);
  {
    etcdreg_range_opts_t ro = {0};
    ro.sort_order = (etcdreg_sort_order_t)7;
    EXPECT_RV(etcdreg_range(c, "k", 1, &ro, range_cb, NULL, &req), ETCDREG_EINVAL);
    memset(&ro, 0, sizeof(ro));
    ro.sort_order = (etcdreg_sort_order_t)-1;
    EXPECT_RV(etcdreg_range(c, "k", 1, &ro, range_cb, NULL, &req), ETCDREG_EINVAL);
    memset(&ro, 0, sizeof(ro));
    ro.sort_target = (etcdreg_sort_target_t)9;
    EXPECT_RV(etcdreg_range(c, "k", 1, &ro, range_cb, NULL, &req), ETCDREG_EINVAL);
    memset(&ro, 0, sizeof(ro));
    ro.limit = -1;
    EXPECT_RV(etcdreg_range(c, "k", 1, &ro, range_cb, NULL, &req), ETCDREG_EINVAL);
    memset(&ro, 0, sizeof(ro));
    ro.revision = -5;
    EXPECT_RV(etcdreg_range(c, "k", 1, &ro, range_cb, NULL, &req), ETCDREG_EINVAL);
    memset(&ro, 0, sizeof(ro));
    ro.range_end_len = 3; /* range_end NULL */
    EXPECT_RV(etcdreg_range(c, "k", 1, &ro, range_cb, NULL, &req), ETCDREG_EINVAL);
  }

  /* delete */
  EXPECT_RV(etcdreg_delete(c, "", 0, NULL, delete_cb, NULL, &req), ETCDREG_EINVAL);
  EXPECT_RV(etcdreg_delete(c, "k", 1, NULL, NULL, NULL, &req), ETCDREG_EINVAL);

  /* compact */
  EXPECT_RV(etcdreg_compact(c, 0, 0, 0, compact_cb, NULL, &req), ETCDREG_EINVAL);
  EXPECT_RV(etcdreg_compact(c, -3, 1, 0, compact_cb, NULL, &req), ETCDREG_EINVAL);
  EXPECT_RV(etcdreg_compact(c, 5, 0, 0, NULL, NULL, &req), ETCDREG_EINVAL);

  /* txn */
  {
    etcdreg_compare_t *cmps = calloc(129, sizeof(*cmps));
    assert_non_null(cmps);
    for (size_t i = 0; i < 129; i++) {
      cmps[i].target = ETCDREG_CMP_VERSION;
      cmps[i].key = "k";
      cmps[i].key_len = 1;
    }
    etcdreg_txn_t t = {0};
    t.compares = cmps;
    t.compare_count = 129;
    EXPECT_RV(etcdreg_txn(c, &t, txn_cb, NULL, &req), ETCDREG_EINVAL);
    EXPECT_RV(etcdreg_txn(c, NULL, txn_cb, NULL, &req), ETCDREG_EINVAL);

    /* 129 operations. */
    etcdreg_txn_op_t *ops = calloc(129, sizeof(*ops));
    assert_non_null(ops);
    for (size_t i = 0; i < 129; i++) {
      ops[i].type = ETCDREG_OP_RANGE;
      ops[i].key = "k";
      ops[i].key_len = 1;
    }
    memset(&t, 0, sizeof(t));
    t.success = ops;
    t.success_count = 129;
    EXPECT_RV(etcdreg_txn(c, &t, txn_cb, NULL, &req), ETCDREG_EINVAL);
    memset(&t, 0, sizeof(t));
    t.failure = ops;
    t.failure_count = 129;
    EXPECT_RV(etcdreg_txn(c, &t, txn_cb, NULL, &req), ETCDREG_EINVAL);

    /* Bad compare fields and op types; counts without arrays. */
    memset(&t, 0, sizeof(t));
    t.compares = cmps;
    t.compare_count = 1;
    cmps[0].result = (etcdreg_compare_result_t)9;
    EXPECT_RV(etcdreg_txn(c, &t, txn_cb, NULL, &req), ETCDREG_EINVAL);
    cmps[0].result = ETCDREG_CMP_EQUAL;
    cmps[0].target = (etcdreg_compare_target_t)9;
    EXPECT_RV(etcdreg_txn(c, &t, txn_cb, NULL, &req), ETCDREG_EINVAL);
    cmps[0].target = ETCDREG_CMP_VERSION;
    cmps[0].key_len = 0; /* no key, no prefix */
    EXPECT_RV(etcdreg_txn(c, &t, txn_cb, NULL, &req), ETCDREG_EINVAL);
    memset(&t, 0, sizeof(t));
    t.compare_count = 1; /* compares NULL */
    EXPECT_RV(etcdreg_txn(c, &t, txn_cb, NULL, &req), ETCDREG_EINVAL);
    memset(&t, 0, sizeof(t));
    t.success_count = 1; /* success NULL */
    EXPECT_RV(etcdreg_txn(c, &t, txn_cb, NULL, &req), ETCDREG_EINVAL);
    memset(&t, 0, sizeof(t));
    ops[0].type = (etcdreg_op_type_t)9;
    t.success = ops;
    t.success_count = 1;
    EXPECT_RV(etcdreg_txn(c, &t, txn_cb, NULL, &req), ETCDREG_EINVAL);
    ops[0].type = ETCDREG_OP_TXN; /* nested txn NULL */
    ops[0].txn = NULL;
    EXPECT_RV(etcdreg_txn(c, &t, txn_cb, NULL, &req), ETCDREG_EINVAL);
    ops[0].type = ETCDREG_OP_PUT; /* put op with an empty key */
    ops[0].key_len = 0;
    EXPECT_RV(etcdreg_txn(c, &t, txn_cb, NULL, &req), ETCDREG_EINVAL);

    /* Nesting deeper than 16. */
    enum { DEPTH = 20 };
    etcdreg_txn_t nest[DEPTH];
    etcdreg_txn_op_t nest_op[DEPTH];
    memset(nest, 0, sizeof(nest));
    memset(nest_op, 0, sizeof(nest_op));
    for (size_t i = 0; i + 1 < DEPTH; i++) {
      nest_op[i].type = ETCDREG_OP_TXN;
      nest_op[i].txn = &nest[i + 1];
      nest[i].success = &nest_op[i];
      nest[i].success_count = 1;
    }
    EXPECT_RV(etcdreg_txn(c, &nest[0], txn_cb, NULL, &req), ETCDREG_EINVAL);
    free(ops);
    free(cmps);
  }

  /* Too large for the send limit: rejected synchronously, before connecting. */
  {
    size_t big = 3u * 1024 * 1024;
    uint8_t *v = malloc(big);
    assert_non_null(v);
    memset(v, 'v', big);
    EXPECT_RV(etcdreg_put(c, "k", 1, v, big, NULL, put_cb, NULL, &req), ETCDREG_ETOOLARGE);
    free(v);
  }

  assert_ptr_equal(req, (etcdreg_request_t *)(uintptr_t)0x1); /* never written */
  /* No connection was attempted, no request is pending, no callback fires. */
  assert_null(c->conns);
  assert_null(c->requests);
  assert_int_equal(c->request_count, 0);
  assert_int_equal(c->parked_count, 0);
  assert_int_equal(etcdreg_client_state(c), ETCDREG_STATE_IDLE);
  uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(cb_calls, 0);

  /* After close every call says ECLOSED; closing again too. */
  int closed = 0;
  assert_int_equal(etcdreg_client_close(c, close_cb, &closed), 0);
  EXPECT_RV(etcdreg_put(c, "k", 1, "v", 1, NULL, put_cb, NULL, &req), ETCDREG_ECLOSED);
  EXPECT_RV(etcdreg_range(c, "k", 1, NULL, range_cb, NULL, &req), ETCDREG_ECLOSED);
  EXPECT_RV(etcdreg_delete(c, "k", 1, NULL, delete_cb, NULL, &req), ETCDREG_ECLOSED);
  EXPECT_RV(etcdreg_compact(c, 5, 0, 0, compact_cb, NULL, &req), ETCDREG_ECLOSED);
  {
    etcdreg_txn_t t = {0};
    EXPECT_RV(etcdreg_txn(c, &t, txn_cb, NULL, &req), ETCDREG_ECLOSED);
  }
  EXPECT_RV(etcdreg_client_close(c, close_cb, &closed), ETCDREG_ECLOSED);
  assert_null(c->conns);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
  assert_int_equal(cb_calls, 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- etcdreg_prefix_end ---- */

static void expect_prefix_end(const void *p, size_t n, const void *want, size_t want_len) {
  uint8_t *in = malloc(n ? n : 1);
  size_t cap = n ? n : 1;
  uint8_t *out = malloc(cap); /* exact size: ASan catches overflows */
  assert_non_null(in);
  assert_non_null(out);
  if (n) memcpy(in, p, n);
  size_t got = etcdreg_prefix_end(in, n, out);
  assert_int_equal(got, want_len);
  assert_memory_equal(out, want, want_len);
  assert_memory_equal(in, p, n); /* input untouched */
  free(in);
  free(out);
}

static void test_prefix_end(void **state) {
  (void)state;
  expect_prefix_end("a", 1, "b", 1);
  expect_prefix_end("a\xff", 2, "b", 1);
  expect_prefix_end("\xff\xff", 2, "\0", 1);
  expect_prefix_end("\xff", 1, "\0", 1);
  expect_prefix_end("abc", 3, "abd", 3);
  expect_prefix_end("", 0, "\0", 1);
  expect_prefix_end("a\xfe", 2, "a\xff", 2);
  expect_prefix_end("\x00", 1, "\x01", 1);
  expect_prefix_end("ab\xff\xff\xff", 5, "ac", 2);
  expect_prefix_end("/svc/", 5, "/svc0", 5);
  expect_prefix_end("\xfe\xff", 2, "\xff", 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options_defaults),
      cmocka_unit_test(test_client_new_rejects),
      cmocka_unit_test(test_client_new_accepts),
      cmocka_unit_test(test_client_new_rejects_nan_backoff),
      cmocka_unit_test(test_endpoint_parse_accepts),
      cmocka_unit_test(test_endpoint_parse_rejects),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_prefix_end),
  };
  return cmocka_run_group_tests_name("options", tests, NULL, NULL);
}
