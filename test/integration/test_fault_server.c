/* The client against a fake gRPC server (test/harness/fake_server.c) that misbehaves on
 * demand: broken framing, oversized prefixes, non-gRPC answers, trailers-only errors,
 * RST_STREAM, GOAWAY (one-step and grpc-go's two-step), undecodable protobuf, HTTP 500,
 * truncated or missing or doubled messages, connections dropped after the request, and
 * silence.  For each: the callback fires exactly once with a precise error (or the call
 * is retried transparently when it provably was not processed), nothing crashes or
 * hangs, and the same client then makes a normal successful call.  No etcd: the fake
 * server runs on the test's own loop. */
#include <sys/resource.h>

#include "fake_server.h"
#include "itest.h"

#if defined(__SANITIZE_ADDRESS__)
#define FT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FT_ASAN 1
#endif
#endif

#ifdef FT_ASAN
/* An allocation over 1 GiB fails (returns NULL) instead of quietly succeeding, so a
 * client that believed a 2 GiB length prefix would show up as ETCDREG_ENOMEM. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1:max_allocation_size_mb=1024"; }
#endif

/* The same without ASan: the data segment may not grow beyond 1 GiB. */
static void limit_memory(void) {
#ifndef FT_ASAN
  struct rlimit rl = {1024ul * 1024 * 1024, 1024ul * 1024 * 1024};
  if (setrlimit(RLIMIT_DATA, &rl) != 0) perror("setrlimit(RLIMIT_DATA)");
#endif
}

typedef struct {
  uv_loop_t loop;
  fake_server_t *fs;
  etcdreg_client_t *c;
  char ep[64];
} fx_t;

static void fx_tweak(etcdreg_client_options_t *o) {
  o->request_timeout_ms = 5000; /* a hang shows up as ETIMEDOUT well before the watchdog */
}

static int fx_setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  if (!f || uv_loop_init(&f->loop) != 0) return -1;
  if (fake_server_start(&f->loop, &f->fs) != 0) return -1;
  fake_server_endpoint(f->fs, f->ep, sizeof(f->ep));
  f->c = itest_client(&f->loop, f->ep, fx_tweak);
  *state = f;
  return 0;
}

static void on_fs_closed(void *data) { *(int *)data = 1; }

static void close_client(uv_loop_t *loop, etcdreg_client_t *c) {
  int closed = 0;
  assert_int_equal(etcdreg_client_close(c, itest_on_closed, &closed), 0);
  itest_run_until(loop, &closed, 10000);
}

static int fx_teardown(void **state) {
  fx_t *f = *state;
  close_client(&f->loop, f->c);
  int closed = 0;
  fake_server_close(f->fs, on_fs_closed, &closed);
  itest_run_until(&f->loop, &closed, 10000);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

/* Runs the loop for `ms` more: a callback that fires twice would show up here. */
static void settle(uv_loop_t *loop, uint64_t ms) {
  int expired = 0;
  uv_timer_t t;
  uv_timer_init(loop, &t);
  t.data = &expired;
  uv_timer_start(&t, itest_watchdog_cb, ms, 0);
  while (!expired) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}

static void show(const char *what, const itest_result_t *r) {
  print_message("  %-30s -> %s (%d), grpc-status %d, message \"%s\"\n", what,
                etcdreg_err_name(r->status), r->status, r->grpc_status, r->message);
}

static void range_on(uv_loop_t *loop, etcdreg_client_t *c, const char *key, itest_result_t *r) {
  itest_range(loop, c, key, NULL, r);
  settle(loop, 50);
  assert_int_equal(r->calls, 1);
}

static void put_on(uv_loop_t *loop, etcdreg_client_t *c, const char *key, const char *value,
                   const etcdreg_put_opts_t *o, itest_result_t *r) {
  itest_result_reset(r);
  assert_int_equal(etcdreg_put(c, key, strlen(key), value, strlen(value), o, itest_on_put, r, NULL), 0);
  itest_run_until(loop, &r->done, 15000);
  settle(loop, 50);
  assert_int_equal(r->calls, 1);
}

/* The client is still usable: a normal Range of a key written before succeeds. */
static void expect_usable(fx_t *f, const char *key, const char *value) {
  itest_result_t r = {0};
  range_on(&f->loop, f->c, key, &r);
  if (r.status) show("follow-up Range", &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.kv_count, 1);
  assert_string_equal(r.kvs[0].key, key);
  assert_string_equal(r.kvs[0].value, value);
  itest_result_reset(&r);
}

/* A normal Put that the later checks read back; also opens the connection (stream 1). */
static void seed(fx_t *f) {
  itest_result_t r = {0};
  put_on(&f->loop, f->c, "/fs/seed", "seeded", NULL, &r);
  assert_int_equal(r.status, 0);
  itest_result_reset(&r);
}

/* Seeds, sends one Range that meets `mode`, returns its result in *r and checks that
 * the client is still usable afterwards (on the same connection unless `reconnects`). */
static void fault_range(fx_t *f, fs_mode_t mode, itest_result_t *r) {
  seed(f);
  fs_stats_t before, after;
  fake_server_stats(f->fs, &before);
  fake_server_push_mode(f->fs, mode);
  range_on(&f->loop, f->c, "/fs/seed", r);
  show(fake_server_mode_name(mode), r);
  fake_server_stats(f->fs, &after);
  assert_int_equal(fake_server_pending_modes(f->fs), 0);
  assert_int_equal(after.range_requests - before.range_requests, 1); /* not replayed */
  expect_usable(f, "/fs/seed", "seeded");
}

/* ---- normal behaviour ---- */

static void test_normal(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  put_on(&f->loop, f->c, "/fs/a", "hello", NULL, &r);
  assert_int_equal(r.status, 0);
  int64_t rev = r.revision;
  assert_true(rev > 1);
  etcdreg_put_opts_t po = {.prev_kv = 1};
  put_on(&f->loop, f->c, "/fs/a", "world", &po, &r);
  assert_int_equal(r.status, 0);
  assert_true(r.has_prev);
  assert_string_equal(r.kvs[0].value, "hello");
  put_on(&f->loop, f->c, "/fs/b", "x", NULL, &r);
  range_on(&f->loop, f->c, "/fs/a", &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.kv_count, 1);
  assert_string_equal(r.kvs[0].value, "world");
  assert_int_equal(r.kvs[0].version, 2);
  assert_int_equal(r.kvs[0].create_revision, rev);
  etcdreg_range_opts_t ro = {.prefix = 1};
  itest_range(&f->loop, f->c, "/fs/", &ro, &r);
  assert_int_equal(r.kv_count, 2);
  assert_int_equal(r.count, 2);
  range_on(&f->loop, f->c, "/fs/missing", &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.kv_count, 0);
  fs_stats_t st;
  fake_server_stats(f->fs, &st);
  assert_int_equal(st.connections, 1);
  assert_int_equal(fake_server_connections(f->fs), 1);
  assert_int_equal(st.put_requests, 3);
  assert_int_equal(st.puts_applied, 3);
  assert_int_equal(st.range_requests, 3);
  assert_int_equal(fake_server_requests(f->fs), 6);
  itest_result_reset(&r);
}

/* ---- broken gRPC framing ---- */

static void test_malformed_frame(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fault_range(f, FS_MALFORMED_FRAME, &r);
  assert_int_equal(r.status, ETCDREG_EPROTO);
  assert_int_equal(r.grpc_status, -1);
  assert_int_equal(fake_server_connections(f->fs), 1); /* a stream error, not a connection one */
  itest_result_reset(&r);
}

static void test_garbage_prefix(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fault_range(f, FS_GARBAGE_PREFIX, &r);
  assert_int_equal(r.status, ETCDREG_EPROTO);
  assert_int_equal(r.grpc_status, -1);
  assert_int_equal(fake_server_connections(f->fs), 1);
  itest_result_reset(&r);
}

static void test_oversized_prefix(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fault_range(f, FS_OVERSIZED_PREFIX, &r);
  /* ETCDREG_ENOMEM here would mean the client tried to allocate the 2 GiB. */
  assert_int_equal(r.status, ETCDREG_ETOOLARGE);
  assert_int_equal(r.grpc_status, -1);
  assert_non_null(strstr(r.message, "2147483647"));
  assert_int_equal(fake_server_connections(f->fs), 1);
  itest_result_reset(&r);
}

static void test_truncated_message(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fault_range(f, FS_TRUNCATED_MESSAGE, &r);
  assert_int_equal(r.status, ETCDREG_EPROTO);
  assert_int_equal(fake_server_connections(f->fs), 1);
  itest_result_reset(&r);
}

static void test_no_message(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fault_range(f, FS_NO_MESSAGE, &r);
  assert_int_equal(r.status, ETCDREG_EPROTO);
  assert_int_equal(fake_server_connections(f->fs), 1);
  itest_result_reset(&r);
}

static void test_two_messages(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fault_range(f, FS_TWO_MESSAGES, &r);
  assert_int_equal(r.status, ETCDREG_EPROTO);
  assert_int_equal(fake_server_connections(f->fs), 1);
  itest_result_reset(&r);
}

static void test_invalid_protobuf(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fault_range(f, FS_INVALID_PROTOBUF, &r);
  assert_int_equal(r.status, ETCDREG_EPROTO);
  assert_int_equal(r.grpc_status, -1);
  assert_int_equal(fake_server_connections(f->fs), 1);
  itest_result_reset(&r);
}

/* ---- answers that are not gRPC ---- */

/* gRPC: a response whose content-type is not application/grpc is not gRPC at all; the
 * status comes from the HTTP status (200 -> UNKNOWN) and the body is not parsed. */
static void test_wrong_content_type(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fault_range(f, FS_WRONG_CONTENT_TYPE, &r);
  assert_int_not_equal(r.status, 0);
  assert_non_null(strstr(r.message, "content-type"));
  assert_int_equal(r.status, ETCDREG_EUNKNOWN);
  itest_result_reset(&r);
}

static void test_wrong_content_type_empty(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fault_range(f, FS_WRONG_CONTENT_TYPE_EMPTY, &r);
  assert_int_not_equal(r.status, 0);
  assert_non_null(strstr(r.message, "content-type"));
  assert_int_equal(r.status, ETCDREG_EUNKNOWN);
  itest_result_reset(&r);
}

/* gRPC's HTTP-to-gRPC mapping: 500 is not listed, so UNKNOWN. */
static void test_http_500(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fault_range(f, FS_HTTP_500, &r);
  assert_int_equal(r.status, ETCDREG_EUNKNOWN);
  assert_non_null(strstr(r.message, "500"));
  itest_result_reset(&r);
}

/* The same with an HTML error page, as an HTTP proxy sends it: the body is no gRPC
 * message and must not be parsed as one. */
static void test_http_500_body(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fault_range(f, FS_HTTP_500_BODY, &r);
  assert_int_not_equal(r.status, 0);
  assert_non_null(strstr(r.message, "500"));
  assert_int_equal(r.status, ETCDREG_EUNKNOWN);
  itest_result_reset(&r);
}

/* ---- a trailers-only error ---- */

static void test_trailers_only_error(void **state) {
  fx_t *f = *state;
  seed(f);
  itest_result_t r = {0};
  fs_stats_t before, after;
  fake_server_stats(f->fs, &before);
  fake_server_push_mode(f->fs, FS_TRAILERS_ONLY_ERROR);
  etcdreg_put_opts_t po = {.lease = 0x1234567};
  put_on(&f->loop, f->c, "/fs/leased", "v", &po, &r);
  show("FS_TRAILERS_ONLY_ERROR (Put)", &r);
  assert_int_equal(r.status, ETCDREG_ELEASENOTFOUND);
  assert_int_equal(r.grpc_status, 5);
  assert_string_equal(r.message, "etcdserver: requested lease not found");
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.put_requests - before.put_requests, 1);
  /* The same for a Range. */
  fault_range(f, FS_TRAILERS_ONLY_ERROR, &r);
  assert_int_equal(r.status, ETCDREG_ELEASENOTFOUND);
  assert_string_equal(r.message, "etcdserver: requested lease not found");
  assert_int_equal(fake_server_connections(f->fs), 1);
  itest_result_reset(&r);
}

/* ---- RST_STREAM ---- */

static void test_rst_internal(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fault_range(f, FS_RST_STREAM, &r);
  assert_int_equal(r.status, ETCDREG_EINTERNAL);
  /* A write reset with INTERNAL_ERROR may have been applied: never replayed. */
  fs_stats_t before, after;
  fake_server_stats(f->fs, &before);
  fake_server_push_mode(f->fs, FS_RST_STREAM);
  put_on(&f->loop, f->c, "/fs/rst", "v", NULL, &r);
  show("FS_RST_STREAM (Put)", &r);
  assert_int_equal(r.status, ETCDREG_EINTERNAL);
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.put_requests - before.put_requests, 1);
  assert_int_equal(after.rsts_sent - before.rsts_sent, 1);
  assert_int_equal(fake_server_connections(f->fs), 1);
  expect_usable(f, "/fs/seed", "seeded");
  itest_result_reset(&r);
}

/* REFUSED_STREAM: provably not processed, so retried at once, even a write. */
static void test_rst_refused(void **state) {
  fx_t *f = *state;
  seed(f);
  itest_result_t r = {0};
  fs_stats_t before, after;
  fake_server_stats(f->fs, &before);
  fake_server_push_mode(f->fs, FS_RST_REFUSED);
  range_on(&f->loop, f->c, "/fs/seed", &r);
  show("FS_RST_REFUSED (Range)", &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.kv_count, 1);
  assert_string_equal(r.kvs[0].value, "seeded");
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.range_requests - before.range_requests, 2);

  fake_server_stats(f->fs, &before);
  fake_server_push_mode(f->fs, FS_RST_REFUSED);
  put_on(&f->loop, f->c, "/fs/refused", "once", NULL, &r);
  show("FS_RST_REFUSED (Put)", &r);
  assert_int_equal(r.status, 0);
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.put_requests - before.put_requests, 2);
  assert_int_equal(after.puts_applied - before.puts_applied, 1);
  int64_t version = 0;
  assert_int_equal(fake_server_get(f->fs, "/fs/refused", 11, NULL, NULL, &version), 0);
  assert_int_equal(version, 1);
  assert_int_equal(fake_server_connections(f->fs), 1);
  expect_usable(f, "/fs/refused", "once");
  itest_result_reset(&r);
}

static void tweak_two_retries(etcdreg_client_options_t *o) {
  o->request_timeout_ms = 5000;
  o->max_retries = 2;
}

/* A server that refuses every stream: the retries are bounded. */
static void test_rst_refused_always(void **state) {
  fx_t *f = *state;
  seed(f);
  etcdreg_client_t *c2 = itest_client(&f->loop, f->ep, tweak_two_retries);
  itest_result_t r = {0};
  fs_stats_t before, after;
  fake_server_stats(f->fs, &before);
  fake_server_set_mode(f->fs, FS_RST_REFUSED);
  range_on(&f->loop, c2, "/fs/seed", &r);
  fake_server_set_mode(f->fs, FS_NORMAL);
  show("FS_RST_REFUSED (always)", &r);
  assert_int_equal(r.status, ETCDREG_EUNAVAILABLE);
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.range_requests - before.range_requests, 3); /* 1 + max_retries */
  range_on(&f->loop, c2, "/fs/seed", &r);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.kvs[0].value, "seeded");
  close_client(&f->loop, c2);
  expect_usable(f, "/fs/seed", "seeded");
  itest_result_reset(&r);
}

/* ---- GOAWAY ---- */

/* GOAWAY(last_stream_id 0) in answer to the very first stream of the connection. */
static void test_goaway_first_stream(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  fake_server_push_mode(f->fs, FS_GOAWAY_MIDSTREAM);
  range_on(&f->loop, f->c, "/fs/none", &r);
  show("FS_GOAWAY_MIDSTREAM (stream 1)", &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.kv_count, 0);
  fs_stats_t st;
  fake_server_stats(f->fs, &st);
  assert_int_equal(st.range_requests, 2);
  assert_int_equal(st.connections, 2);
  assert_true(st.goaways_sent >= 1);
  seed(f);
  expect_usable(f, "/fs/seed", "seeded");
}

static void test_goaway_midstream_range(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  seed(f);
  fs_stats_t before, after;
  fake_server_stats(f->fs, &before);
  fake_server_push_mode(f->fs, FS_GOAWAY_MIDSTREAM);
  range_on(&f->loop, f->c, "/fs/seed", &r);
  show("FS_GOAWAY_MIDSTREAM (Range)", &r);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.kvs[0].value, "seeded");
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.range_requests - before.range_requests, 2);
  assert_int_equal(after.connections, 2);
  assert_int_equal(after.goaways_sent - before.goaways_sent, 1);
  expect_usable(f, "/fs/seed", "seeded");
  itest_result_reset(&r);
}

/* A Put on stream 3 meets GOAWAY(last_stream_id 1): not processed, so retried on a new
 * connection and applied exactly once. */
static void test_goaway_put_above_last_stream(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  seed(f); /* stream 1 */
  fs_stats_t before, after;
  fake_server_stats(f->fs, &before);
  fake_server_push_mode(f->fs, FS_GOAWAY_MIDSTREAM);
  put_on(&f->loop, f->c, "/fs/goaway", "put-once", NULL, &r);
  show("FS_GOAWAY_MIDSTREAM (Put)", &r);
  assert_int_equal(r.status, 0);
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.put_requests - before.put_requests, 2); /* the refused one and the retry */
  assert_int_equal(after.puts_applied - before.puts_applied, 1);
  assert_int_equal(after.connections, 2);
  int64_t version = 0;
  assert_int_equal(fake_server_get(f->fs, "/fs/goaway", 10, NULL, NULL, &version), 0);
  assert_int_equal(version, 1);
  expect_usable(f, "/fs/goaway", "put-once");
  itest_result_reset(&r);
}

/* Two Puts in flight; GOAWAY comes with the second: the first (at or below
 * last_stream_id) is answered on the old connection, the second is retried on a new
 * one. Each is applied exactly once. */
static void test_goaway_concurrent_puts(void **state) {
  fx_t *f = *state;
  seed(f);
  fs_stats_t before, after;
  fake_server_stats(f->fs, &before);
  fake_server_push_mode(f->fs, FS_NORMAL);
  fake_server_push_mode(f->fs, FS_GOAWAY_MIDSTREAM);
  itest_result_t a = {0}, b = {0};
  assert_int_equal(etcdreg_put(f->c, "/fs/ca", 6, "A", 1, NULL, itest_on_put, &a, NULL), 0);
  assert_int_equal(etcdreg_put(f->c, "/fs/cb", 6, "B", 1, NULL, itest_on_put, &b, NULL), 0);
  itest_run_until(&f->loop, &a.done, 15000);
  itest_run_until(&f->loop, &b.done, 15000);
  settle(&f->loop, 50);
  show("FS_GOAWAY_MIDSTREAM (Put A)", &a);
  show("FS_GOAWAY_MIDSTREAM (Put B)", &b);
  assert_int_equal(a.calls, 1);
  assert_int_equal(b.calls, 1);
  assert_int_equal(a.status, 0);
  assert_int_equal(b.status, 0);
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.put_requests - before.put_requests, 3);
  assert_int_equal(after.puts_applied - before.puts_applied, 2);
  assert_int_equal(after.connections, 2);
  int64_t va = 0, vb = 0;
  assert_int_equal(fake_server_get(f->fs, "/fs/ca", 6, NULL, NULL, &va), 0);
  assert_int_equal(fake_server_get(f->fs, "/fs/cb", 6, NULL, NULL, &vb), 0);
  assert_int_equal(va, 1);
  assert_int_equal(vb, 1);
  expect_usable(f, "/fs/ca", "A");
  expect_usable(f, "/fs/cb", "B");
  itest_result_reset(&a);
  itest_result_reset(&b);
}

/* grpc-go's graceful stop: GOAWAY(2^31-1) + PING, then GOAWAY(this stream) and the
 * answer. The call succeeds on the old connection; the next one opens a new one. */
static void test_goaway_two_step(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  seed(f);
  fs_stats_t before, after;
  fake_server_stats(f->fs, &before);
  fake_server_push_mode(f->fs, FS_GOAWAY_TWO_STEP);
  range_on(&f->loop, f->c, "/fs/seed", &r);
  show("FS_GOAWAY_TWO_STEP (Range)", &r);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.kvs[0].value, "seeded");
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.range_requests - before.range_requests, 1);
  assert_int_equal(after.goaways_sent - before.goaways_sent, 2);
  assert_int_equal(after.connections, 1);
  /* A Put during the drain: the client must not start it on the draining connection. */
  put_on(&f->loop, f->c, "/fs/after", "drained", NULL, &r);
  assert_int_equal(r.status, 0);
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.connections, 2);
  assert_int_equal(after.put_requests - before.put_requests, 1);
  expect_usable(f, "/fs/after", "drained");
  itest_result_reset(&r);
}

/* ---- the connection goes away without an answer ---- */

static void test_close_after_request(void **state) {
  fx_t *f = *state;
  itest_result_t r = {0};
  seed(f);
  fs_stats_t before, after;
  fake_server_stats(f->fs, &before);
  /* A read is retried on a new connection. */
  fake_server_push_mode(f->fs, FS_CLOSE_AFTER_REQUEST);
  range_on(&f->loop, f->c, "/fs/seed", &r);
  show("FS_CLOSE_AFTER_REQUEST (Range)", &r);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.kvs[0].value, "seeded");
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.range_requests - before.range_requests, 2);
  assert_int_equal(after.connections, 2);
  /* A write that reached the server is never replayed: its outcome is unknown. */
  fake_server_stats(f->fs, &before);
  fake_server_push_mode(f->fs, FS_CLOSE_AFTER_REQUEST);
  put_on(&f->loop, f->c, "/fs/unknown", "maybe", NULL, &r);
  show("FS_CLOSE_AFTER_REQUEST (Put)", &r);
  assert_int_equal(r.status, ETCDREG_EOUTCOMEUNKNOWN);
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.put_requests - before.put_requests, 1);
  assert_int_equal(after.puts_applied - before.puts_applied, 0);
  expect_usable(f, "/fs/seed", "seeded");
  assert_int_equal(fake_server_connections(f->fs), 3);
  itest_result_reset(&r);
}

static void test_silent_deadline(void **state) {
  fx_t *f = *state;
  seed(f);
  itest_result_t r = {0};
  fs_stats_t before, after;
  fake_server_stats(f->fs, &before);
  fake_server_push_mode(f->fs, FS_SILENT);
  etcdreg_range_opts_t o = {.timeout_ms = 300};
  itest_range(&f->loop, f->c, "/fs/seed", &o, &r);
  settle(&f->loop, 100);
  show("FS_SILENT (Range, 300 ms)", &r);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, ETCDREG_ETIMEDOUT);
  fake_server_stats(f->fs, &after);
  assert_int_equal(after.range_requests - before.range_requests, 1);
  assert_int_equal(after.rsts_received - before.rsts_received, 1); /* the client cancelled the stream */
  assert_int_equal(after.connections, 1);
  expect_usable(f, "/fs/seed", "seeded");
  itest_result_reset(&r);
}

static void tweak_small_recv(etcdreg_client_options_t *o) {
  o->request_timeout_ms = 5000;
  o->max_recv_msg_bytes = 1024 * 1024;
}

/* Large messages cross many DATA frames both ways (reassembly, flow control); a genuine
 * response over the client's receive limit fails alone, the connection stays. */
static void test_large_values(void **state) {
  fx_t *f = *state;
  size_t n = 1536 * 1024;
  char *big = malloc(n + 1);
  assert_non_null(big);
  for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
  big[n] = 0;
  itest_result_t r = {0};
  put_on(&f->loop, f->c, "/fs/big", big, NULL, &r);
  assert_int_equal(r.status, 0);
  range_on(&f->loop, f->c, "/fs/big", &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.kvs[0].value_len, n);
  assert_memory_equal(r.kvs[0].value, big, n);
  etcdreg_client_t *c2 = itest_client(&f->loop, f->ep, tweak_small_recv);
  range_on(&f->loop, c2, "/fs/big", &r);
  show("1.5 MiB value, 1 MiB limit", &r);
  assert_int_equal(r.status, ETCDREG_ETOOLARGE);
  put_on(&f->loop, c2, "/fs/small", "s", NULL, &r);
  assert_int_equal(r.status, 0);
  range_on(&f->loop, c2, "/fs/small", &r);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.kvs[0].value, "s");
  close_client(&f->loop, c2);
  assert_int_equal(fake_server_connections(f->fs), 2);
  expect_usable(f, "/fs/small", "s");
  free(big);
  itest_result_reset(&r);
}

/* Every misbehaviour in a row on one client, twice, then a normal call. */
static void test_all_in_a_row(void **state) {
  fx_t *f = *state;
  seed(f);
  itest_result_t r = {0};
  for (int round = 0; round < 2; round++) {
    for (int m = 1; m < FS_MODE_COUNT; m++) {
      if (m == FS_SILENT) continue;
      fake_server_push_mode(f->fs, (fs_mode_t)m);
      range_on(&f->loop, f->c, "/fs/seed", &r);
      assert_int_not_equal(r.status, ETCDREG_ETIMEDOUT);
      assert_int_not_equal(r.status, ETCDREG_ENOMEM);
    }
  }
  assert_int_equal(fake_server_pending_modes(f->fs), 0);
  expect_usable(f, "/fs/seed", "seeded");
  itest_result_reset(&r);
}

int main(void) {
  limit_memory();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_normal, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_malformed_frame, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_garbage_prefix, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_oversized_prefix, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_truncated_message, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_no_message, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_two_messages, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_invalid_protobuf, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_wrong_content_type, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_wrong_content_type_empty, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_http_500, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_http_500_body, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_trailers_only_error, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_rst_internal, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_rst_refused, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_rst_refused_always, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_goaway_first_stream, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_goaway_midstream_range, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_goaway_put_above_last_stream, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_goaway_concurrent_puts, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_goaway_two_step, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_close_after_request, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_silent_deadline, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_large_values, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_all_in_a_row, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
