/* Every KV operation and option against a real etcd. */
#include "itest.h"

typedef struct {
  uv_loop_t loop;
  etcdreg_client_t *c;
} kv_fixture_t;

static int fx_setup(void **state) {
  kv_fixture_t *f = calloc(1, sizeof(*f));
  uv_loop_init(&f->loop);
  f->c = itest_client(&f->loop, g_etcd.endpoint, NULL);
  *state = f;
  return 0;
}

static int fx_teardown(void **state) {
  kv_fixture_t *f = *state;
  itest_close(&f->loop, f->c);
  free(f);
  return 0;
}

static void test_put_get(void **state) {
  kv_fixture_t *f = *state;
  int64_t rev = itest_put(&f->loop, f->c, "/kv/pg/a", "hello", NULL);
  assert_true(rev > 0);
  itest_result_t r = {0};
  itest_range(&f->loop, f->c, "/kv/pg/a", NULL, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.kv_count, 1);
  assert_string_equal(r.kvs[0].key, "/kv/pg/a");
  assert_string_equal(r.kvs[0].value, "hello");
  assert_int_equal(r.kvs[0].mod_revision, rev);
  assert_int_equal(r.kvs[0].create_revision, rev);
  assert_int_equal(r.kvs[0].version, 1);
  assert_true(r.revision >= rev);
  /* A missing key is an empty result, not an error. */
  itest_range(&f->loop, f->c, "/kv/pg/missing", NULL, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.kv_count, 0);
  itest_result_reset(&r);
}

static void test_range_options(void **state) {
  kv_fixture_t *f = *state;
  char k[64], v[64];
  int64_t revs[10];
  for (int i = 0; i < 10; i++) {
    snprintf(k, sizeof(k), "/kv/ro/%02d", i);
    snprintf(v, sizeof(v), "value-%d", 9 - i);
    revs[i] = itest_put(&f->loop, f->c, k, v, NULL);
  }
  itest_put(&f->loop, f->c, "/kv/ro0", "outside the prefix", NULL);
  itest_result_t r = {0};

  etcdreg_range_opts_t o = {.prefix = 1};
  itest_range(&f->loop, f->c, "/kv/ro/", &o, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.kv_count, 10);
  assert_int_equal(r.count, 10);
  assert_string_equal(r.kvs[0].key, "/kv/ro/00");
  assert_string_equal(r.kvs[9].key, "/kv/ro/09");

  o = (etcdreg_range_opts_t){.prefix = 1, .limit = 3};
  itest_range(&f->loop, f->c, "/kv/ro/", &o, &r);
  assert_int_equal(r.kv_count, 3);
  assert_true(r.more);
  assert_int_equal(r.count, 10);

  o = (etcdreg_range_opts_t){.range_end = "/kv/ro/05", .range_end_len = 9};
  itest_range(&f->loop, f->c, "/kv/ro/02", &o, &r);
  assert_int_equal(r.kv_count, 3); /* 02, 03, 04 */
  assert_string_equal(r.kvs[2].key, "/kv/ro/04");

  o = (etcdreg_range_opts_t){.prefix = 1, .keys_only = 1};
  itest_range(&f->loop, f->c, "/kv/ro/", &o, &r);
  assert_int_equal(r.kv_count, 10);
  assert_int_equal(r.kvs[0].value_len, 0);

  o = (etcdreg_range_opts_t){.prefix = 1, .count_only = 1};
  itest_range(&f->loop, f->c, "/kv/ro/", &o, &r);
  assert_int_equal(r.kv_count, 0);
  assert_int_equal(r.count, 10);

  o = (etcdreg_range_opts_t){.prefix = 1, .serializable = 1};
  itest_range(&f->loop, f->c, "/kv/ro/", &o, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.kv_count, 10);

  o = (etcdreg_range_opts_t){.prefix = 1, .sort_order = ETCDREG_SORT_DESCEND, .sort_target = ETCDREG_SORT_BY_KEY};
  itest_range(&f->loop, f->c, "/kv/ro/", &o, &r);
  assert_string_equal(r.kvs[0].key, "/kv/ro/09");

  o = (etcdreg_range_opts_t){.prefix = 1, .sort_order = ETCDREG_SORT_ASCEND, .sort_target = ETCDREG_SORT_BY_VALUE};
  itest_range(&f->loop, f->c, "/kv/ro/", &o, &r);
  assert_string_equal(r.kvs[0].value, "value-0");
  assert_string_equal(r.kvs[0].key, "/kv/ro/09");

  /* Historical read: at the revision of the 5th put only five keys existed. */
  o = (etcdreg_range_opts_t){.prefix = 1, .revision = revs[4]};
  itest_range(&f->loop, f->c, "/kv/ro/", &o, &r);
  assert_int_equal(r.kv_count, 5);

  o = (etcdreg_range_opts_t){.prefix = 1, .min_mod_revision = revs[7]};
  itest_range(&f->loop, f->c, "/kv/ro/", &o, &r);
  assert_int_equal(r.kv_count, 3);

  o = (etcdreg_range_opts_t){.prefix = 1, .max_create_revision = revs[1]};
  itest_range(&f->loop, f->c, "/kv/ro/", &o, &r);
  assert_int_equal(r.kv_count, 2);

  /* All keys: empty prefix. */
  o = (etcdreg_range_opts_t){.prefix = 1, .count_only = 1};
  itest_range(&f->loop, f->c, "", &o, &r);
  assert_int_equal(r.status, 0);
  assert_true(r.count >= 11);

  /* A future revision is a distinct error with the server's message. */
  o = (etcdreg_range_opts_t){.revision = r.revision + 1000};
  itest_range(&f->loop, f->c, "/kv/ro/00", &o, &r);
  assert_int_equal(r.status, ETCDREG_EFUTUREREV);
  assert_int_equal(r.grpc_status, 11);
  assert_non_null(strstr(r.message, "future revision"));
  itest_result_reset(&r);
}

static void test_put_options(void **state) {
  kv_fixture_t *f = *state;
  itest_put(&f->loop, f->c, "/kv/po/k", "one", NULL);
  itest_result_t r = {0};
  etcdreg_put_opts_t po = {.prev_kv = 1};
  assert_int_equal(etcdreg_put(f->c, "/kv/po/k", 8, "two", 3, &po, itest_on_put, &r, NULL), 0);
  itest_run_until(&f->loop, &r.done, 15000);
  assert_int_equal(r.status, 0);
  assert_true(r.has_prev);
  assert_string_equal(r.kvs[0].value, "one");

  /* ignore_value keeps the value. */
  itest_result_reset(&r);
  po = (etcdreg_put_opts_t){.ignore_value = 1};
  assert_int_equal(etcdreg_put(f->c, "/kv/po/k", 8, NULL, 0, &po, itest_on_put, &r, NULL), 0);
  itest_run_until(&f->loop, &r.done, 15000);
  assert_int_equal(r.status, 0);
  itest_range(&f->loop, f->c, "/kv/po/k", NULL, &r);
  assert_string_equal(r.kvs[0].value, "two");
  assert_int_equal(r.kvs[0].version, 3);

  /* ignore_value on a missing key: etcd says "key not found" (InvalidArgument). */
  itest_result_reset(&r);
  assert_int_equal(etcdreg_put(f->c, "/kv/po/none", 11, NULL, 0, &po, itest_on_put, &r, NULL), 0);
  itest_run_until(&f->loop, &r.done, 15000);
  assert_int_equal(r.status, ETCDREG_EINVAL);
  assert_int_equal(r.grpc_status, 3);
  assert_non_null(strstr(r.message, "key not found"));

  /* A lease that does not exist. */
  itest_result_reset(&r);
  po = (etcdreg_put_opts_t){.lease = 0x1234567};
  assert_int_equal(etcdreg_put(f->c, "/kv/po/l", 8, "x", 1, &po, itest_on_put, &r, NULL), 0);
  itest_run_until(&f->loop, &r.done, 15000);
  assert_int_equal(r.status, ETCDREG_ELEASENOTFOUND);
  assert_int_equal(r.grpc_status, 5);

  /* ignore_lease on an existing key without lease works. */
  itest_result_reset(&r);
  po = (etcdreg_put_opts_t){.ignore_lease = 1};
  assert_int_equal(etcdreg_put(f->c, "/kv/po/k", 8, "three", 5, &po, itest_on_put, &r, NULL), 0);
  itest_run_until(&f->loop, &r.done, 15000);
  assert_int_equal(r.status, 0);
  itest_range(&f->loop, f->c, "/kv/po/k", NULL, &r);
  assert_string_equal(r.kvs[0].value, "three");
  assert_int_equal(r.kvs[0].lease, 0);

  /* Binary keys and values, including NUL bytes. */
  itest_result_reset(&r);
  const char bkey[] = {'/', 'k', 'v', '/', 'b', 0, 1, (char)0xff};
  const char bval[] = {0, 0, 'x', 0};
  assert_int_equal(etcdreg_put(f->c, bkey, sizeof(bkey), bval, sizeof(bval), NULL, itest_on_put, &r, NULL), 0);
  itest_run_until(&f->loop, &r.done, 15000);
  assert_int_equal(r.status, 0);
  itest_result_reset(&r);
  assert_int_equal(etcdreg_range(f->c, bkey, sizeof(bkey), NULL, itest_on_range, &r, NULL), 0);
  itest_run_until(&f->loop, &r.done, 15000);
  assert_int_equal(r.kv_count, 1);
  assert_int_equal(r.kvs[0].value_len, sizeof(bval));
  assert_memory_equal(r.kvs[0].value, bval, sizeof(bval));
  itest_result_reset(&r);
}

static void test_delete(void **state) {
  kv_fixture_t *f = *state;
  itest_put(&f->loop, f->c, "/kv/del/a", "1", NULL);
  itest_put(&f->loop, f->c, "/kv/del/b", "2", NULL);
  itest_put(&f->loop, f->c, "/kv/del/c", "3", NULL);
  itest_put(&f->loop, f->c, "/kv/delx", "outside", NULL);
  itest_result_t r = {0};
  etcdreg_delete_opts_t o = {.prev_kv = 1};
  assert_int_equal(etcdreg_delete(f->c, "/kv/del/a", 9, &o, itest_on_delete, &r, NULL), 0);
  itest_run_until(&f->loop, &r.done, 15000);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.deleted, 1);
  assert_int_equal(r.kv_count, 1);
  assert_string_equal(r.kvs[0].value, "1");

  itest_result_reset(&r);
  o = (etcdreg_delete_opts_t){.prefix = 1, .prev_kv = 1};
  assert_int_equal(etcdreg_delete(f->c, "/kv/del/", 8, &o, itest_on_delete, &r, NULL), 0);
  itest_run_until(&f->loop, &r.done, 15000);
  assert_int_equal(r.deleted, 2);
  assert_int_equal(r.kv_count, 2);

  /* Deleting nothing is not an error. */
  itest_result_reset(&r);
  assert_int_equal(etcdreg_delete(f->c, "/kv/del/a", 9, NULL, itest_on_delete, &r, NULL), 0);
  itest_run_until(&f->loop, &r.done, 15000);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.deleted, 0);

  itest_range(&f->loop, f->c, "/kv/delx", NULL, &r);
  assert_int_equal(r.kv_count, 1);

  /* Range delete [b, d) */
  itest_put(&f->loop, f->c, "/kv/dr/a", "1", NULL);
  itest_put(&f->loop, f->c, "/kv/dr/b", "1", NULL);
  itest_put(&f->loop, f->c, "/kv/dr/c", "1", NULL);
  itest_put(&f->loop, f->c, "/kv/dr/d", "1", NULL);
  itest_result_reset(&r);
  o = (etcdreg_delete_opts_t){.range_end = "/kv/dr/d", .range_end_len = 8};
  assert_int_equal(etcdreg_delete(f->c, "/kv/dr/b", 8, &o, itest_on_delete, &r, NULL), 0);
  itest_run_until(&f->loop, &r.done, 15000);
  assert_int_equal(r.deleted, 2);
  itest_result_reset(&r);
}

typedef struct {
  int done, calls, status;
  int succeeded;
  size_t n;
  etcdreg_op_type_t types[8];
  char first_value[64];
  int nested_succeeded;
  size_t nested_n;
  int64_t put_revision;
} txn_capture_t;

static void on_txn(etcdreg_request_t *req, int status, const etcdreg_txn_result_t *res, void *data) {
  (void)req;
  txn_capture_t *t = data;
  t->done = 1;
  t->calls++;
  t->status = status;
  if (status) return;
  t->succeeded = res->succeeded;
  t->n = res->response_count;
  t->put_revision = res->header.revision;
  for (size_t i = 0; i < res->response_count && i < 8; i++) {
    t->types[i] = res->responses[i].type;
    if (res->responses[i].type == ETCDREG_OP_RANGE && res->responses[i].u.range.kv_count && !t->first_value[0])
      snprintf(t->first_value, sizeof(t->first_value), "%.*s", (int)res->responses[i].u.range.kvs[0].value_len,
               (const char *)res->responses[i].u.range.kvs[0].value);
    if (res->responses[i].type == ETCDREG_OP_TXN) {
      t->nested_succeeded = res->responses[i].u.txn->succeeded;
      t->nested_n = res->responses[i].u.txn->response_count;
    }
  }
}

static void run_txn(kv_fixture_t *f, const etcdreg_txn_t *txn, txn_capture_t *t) {
  memset(t, 0, sizeof(*t));
  assert_int_equal(etcdreg_txn(f->c, txn, on_txn, t, NULL), 0);
  itest_run_until(&f->loop, &t->done, 15000);
  assert_int_equal(t->calls, 1);
}

static void test_txn(void **state) {
  kv_fixture_t *f = *state;
  int64_t rev = itest_put(&f->loop, f->c, "/kv/txn/k", "v1", NULL);
  txn_capture_t t;

  /* value == v1 -> put v2 and read it back in the same transaction */
  etcdreg_compare_t cmp = {.target = ETCDREG_CMP_VALUE, .result = ETCDREG_CMP_EQUAL,
                           .key = "/kv/txn/k", .key_len = 9, .value = "v1", .value_len = 2};
  etcdreg_txn_op_t ok_ops[] = {
      {.type = ETCDREG_OP_PUT, .key = "/kv/txn/k", .key_len = 9, .value = "v2", .value_len = 2},
      {.type = ETCDREG_OP_RANGE, .key = "/kv/txn/k", .key_len = 9},
  };
  etcdreg_txn_op_t fail_ops[] = {{.type = ETCDREG_OP_RANGE, .key = "/kv/txn/k", .key_len = 9}};
  etcdreg_txn_t txn = {&cmp, 1, ok_ops, 2, fail_ops, 1, 0};
  run_txn(f, &txn, &t);
  assert_int_equal(t.status, 0);
  assert_true(t.succeeded);
  assert_int_equal(t.n, 2);
  assert_int_equal(t.types[0], ETCDREG_OP_PUT);
  assert_int_equal(t.types[1], ETCDREG_OP_RANGE);
  assert_string_equal(t.first_value, "v2");

  /* Same compare now fails: the failure list runs. */
  run_txn(f, &txn, &t);
  assert_false(t.succeeded);
  assert_int_equal(t.n, 1);
  assert_string_equal(t.first_value, "v2");

  /* mod revision, version, create revision (0 = absent), lease */
  etcdreg_compare_t mod_cmp = {.target = ETCDREG_CMP_MOD, .result = ETCDREG_CMP_GREATER,
                               .key = "/kv/txn/k", .key_len = 9, .number = rev};
  txn = (etcdreg_txn_t){&mod_cmp, 1, NULL, 0, NULL, 0, 0};
  run_txn(f, &txn, &t);
  assert_true(t.succeeded);

  etcdreg_compare_t ver_cmp = {.target = ETCDREG_CMP_VERSION, .result = ETCDREG_CMP_EQUAL,
                               .key = "/kv/txn/k", .key_len = 9, .number = 2};
  txn = (etcdreg_txn_t){&ver_cmp, 1, NULL, 0, NULL, 0, 0};
  run_txn(f, &txn, &t);
  assert_true(t.succeeded);

  etcdreg_compare_t absent = {.target = ETCDREG_CMP_CREATE, .result = ETCDREG_CMP_EQUAL,
                              .key = "/kv/txn/new", .key_len = 11, .number = 0};
  etcdreg_txn_op_t create = {.type = ETCDREG_OP_PUT, .key = "/kv/txn/new", .key_len = 11, .value = "x", .value_len = 1};
  txn = (etcdreg_txn_t){&absent, 1, &create, 1, NULL, 0, 0};
  run_txn(f, &txn, &t);
  assert_true(t.succeeded);
  run_txn(f, &txn, &t); /* exists now */
  assert_false(t.succeeded);

  etcdreg_compare_t lease_cmp = {.target = ETCDREG_CMP_LEASE, .result = ETCDREG_CMP_EQUAL,
                                 .key = "/kv/txn/k", .key_len = 9, .number = 0};
  txn = (etcdreg_txn_t){&lease_cmp, 1, NULL, 0, NULL, 0, 0};
  run_txn(f, &txn, &t);
  assert_true(t.succeeded);

  /* Compare over a prefix: no key under /kv/txn/ was created after `rev`+100. */
  etcdreg_compare_t range_cmp = {.target = ETCDREG_CMP_CREATE, .result = ETCDREG_CMP_LESS,
                                 .key = "/kv/txn/", .key_len = 8, .prefix = 1, .number = rev + 100};
  txn = (etcdreg_txn_t){&range_cmp, 1, NULL, 0, NULL, 0, 0};
  run_txn(f, &txn, &t);
  assert_true(t.succeeded);

  /* Nested transaction and a delete in the success list. */
  etcdreg_txn_op_t inner_ops[] = {{.type = ETCDREG_OP_DELETE, .key = "/kv/txn/new", .key_len = 11}};
  etcdreg_txn_t inner = {NULL, 0, inner_ops, 1, NULL, 0, 0};
  etcdreg_txn_op_t outer_ops[] = {{.type = ETCDREG_OP_TXN, .txn = &inner},
                                  {.type = ETCDREG_OP_RANGE, .key = "/kv/txn/new", .key_len = 11}};
  txn = (etcdreg_txn_t){NULL, 0, outer_ops, 2, NULL, 0, 0};
  run_txn(f, &txn, &t);
  assert_int_equal(t.status, 0);
  assert_true(t.succeeded);
  assert_int_equal(t.types[0], ETCDREG_OP_TXN);
  assert_true(t.nested_succeeded);
  assert_int_equal(t.nested_n, 1);

  /* The server's own limit: the same key twice in one list. */
  etcdreg_txn_op_t dup[] = {
      {.type = ETCDREG_OP_PUT, .key = "/kv/txn/d", .key_len = 9, .value = "1", .value_len = 1},
      {.type = ETCDREG_OP_PUT, .key = "/kv/txn/d", .key_len = 9, .value = "2", .value_len = 1}};
  txn = (etcdreg_txn_t){NULL, 0, dup, 2, NULL, 0, 0};
  run_txn(f, &txn, &t);
  assert_int_equal(t.status, ETCDREG_EDUPKEY);

  /* 129 operations are refused before any round trip. */
  etcdreg_txn_op_t many[129];
  for (int i = 0; i < 129; i++) many[i] = (etcdreg_txn_op_t){.type = ETCDREG_OP_RANGE, .key = "/kv/x", .key_len = 5};
  txn = (etcdreg_txn_t){NULL, 0, many, 129, NULL, 0, 0};
  assert_int_equal(etcdreg_txn(f->c, &txn, on_txn, &t, NULL), ETCDREG_EINVAL);
}

typedef struct {
  int done, status;
  int64_t revision;
} compact_capture_t;

static void on_compact(etcdreg_request_t *req, int status, const etcdreg_compact_result_t *res, void *data) {
  (void)req;
  compact_capture_t *cc = data;
  cc->done = 1;
  cc->status = status;
  if (!status) cc->revision = res->header.revision;
}

static void test_compact(void **state) {
  kv_fixture_t *f = *state;
  int64_t old = itest_put(&f->loop, f->c, "/kv/cmp/k", "1", NULL);
  int64_t now = itest_put(&f->loop, f->c, "/kv/cmp/k", "2", NULL);
  compact_capture_t cc = {0};
  assert_int_equal(etcdreg_compact(f->c, now, 1, 0, on_compact, &cc, NULL), 0);
  itest_run_until(&f->loop, &cc.done, 15000);
  assert_int_equal(cc.status, 0);
  itest_result_t r = {0};
  etcdreg_range_opts_t o = {.revision = old};
  itest_range(&f->loop, f->c, "/kv/cmp/k", &o, &r);
  assert_int_equal(r.status, ETCDREG_ECOMPACTED);
  assert_int_equal(r.grpc_status, 11);
  assert_non_null(strstr(r.message, "compacted"));
  /* Compacting again at the same revision is an error too. */
  memset(&cc, 0, sizeof(cc));
  assert_int_equal(etcdreg_compact(f->c, old, 0, 0, on_compact, &cc, NULL), 0);
  itest_run_until(&f->loop, &cc.done, 15000);
  assert_int_equal(cc.status, ETCDREG_ECOMPACTED);
  itest_result_reset(&r);
}

static void test_large_values(void **state) {
  kv_fixture_t *f = *state;
  size_t n = 1024 * 1024;
  char *big = malloc(n);
  for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
  itest_result_t r = {0};
  assert_int_equal(etcdreg_put(f->c, "/kv/big", 7, big, n, NULL, itest_on_put, &r, NULL), 0);
  itest_run_until(&f->loop, &r.done, 30000);
  assert_int_equal(r.status, 0);
  itest_range(&f->loop, f->c, "/kv/big", NULL, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.kvs[0].value_len, n);
  assert_memory_equal(r.kvs[0].value, big, n);
  itest_result_reset(&r);
  free(big);
}

static void small_recv_limit(etcdreg_client_options_t *o) { o->max_recv_msg_bytes = 64 * 1024; }

static void test_receive_limit(void **state) {
  kv_fixture_t *f = *state;
  size_t n = 100 * 1024;
  char *val = calloc(1, n + 1);
  memset(val, 'z', n);
  itest_put(&f->loop, f->c, "/kv/limit/big", val, NULL);
  itest_put(&f->loop, f->c, "/kv/limit/small", "s", NULL);
  free(val);
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, small_recv_limit);
  itest_result_t r = {0};
  itest_range(&loop, c, "/kv/limit/big", NULL, &r);
  assert_int_equal(r.status, ETCDREG_ETOOLARGE);
  assert_non_null(strstr(r.message, "receive limit"));
  /* The connection stays usable for the next call. */
  itest_range(&loop, c, "/kv/limit/small", NULL, &r);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.kvs[0].value, "s");
  itest_result_reset(&r);
  itest_close(&loop, c);
}

typedef struct {
  int outstanding;
  int ok, failed, done;
  int last_error;
  char last_message[200];
  int *seen;
} many_t;

typedef struct {
  many_t *m;
  int index;
} many_slot_t;

static void on_many_put(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  (void)res;
  many_slot_t *s = data;
  s->m->seen[s->index]++;
  if (status == 0) s->m->ok++;
  else {
    s->m->failed++;
    s->m->last_error = status;
    snprintf(s->m->last_message, sizeof(s->m->last_message), "%s", etcdreg_request_message(req));
  }
  if (--s->m->outstanding == 0) s->m->done = 1;
}

static void test_10000_concurrent_puts(void **state) {
  kv_fixture_t *f = *state;
  enum { N = 10000 };
  many_t m = {0};
  m.seen = calloc(N, sizeof(int));
  many_slot_t *slots = calloc(N, sizeof(*slots));
  char key[64];
  for (int i = 0; i < N; i++) {
    slots[i] = (many_slot_t){&m, i};
    int len = snprintf(key, sizeof(key), "/kv/many/%05d", i);
    assert_int_equal(etcdreg_put(f->c, key, (size_t)len, "v", 1, NULL, on_many_put, &slots[i], NULL), 0);
    m.outstanding++;
  }
  itest_run_until(&f->loop, &m.done, 120000);
  if (m.failed) fprintf(stderr, "%d puts failed, last: %s (%s)\n", m.failed, etcdreg_err_name(m.last_error), m.last_message);
  assert_int_equal(m.ok, N);
  assert_int_equal(m.failed, 0);
  for (int i = 0; i < N; i++) assert_int_equal(m.seen[i], 1);
  itest_result_t r = {0};
  etcdreg_range_opts_t o = {.prefix = 1, .count_only = 1};
  itest_range(&f->loop, f->c, "/kv/many/", &o, &r);
  assert_int_equal(r.count, N);
  free(m.seen);
  free(slots);
}

static void test_cancel(void **state) {
  kv_fixture_t *f = *state;
  itest_result_t r = {0};
  etcdreg_request_t *req = NULL;
  assert_int_equal(etcdreg_range(f->c, "/kv/cancel", 10, NULL, itest_on_range, &r, &req), 0);
  etcdreg_request_cancel(req); /* before the loop ran: the answer cannot have come */
  assert_int_equal(r.calls, 0); /* never from inside the call */
  itest_run_until(&f->loop, &r.done, 15000);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, ETCDREG_ECANCELED);
  assert_int_equal(r.grpc_status, -1);
  /* The connection is still fine. */
  itest_range(&f->loop, f->c, "/kv/cancel", NULL, &r);
  assert_int_equal(r.status, 0);
  itest_result_reset(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_put_get, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_range_options, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_put_options, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_delete, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_txn, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_large_values, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_receive_limit, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_10000_concurrent_puts, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_cancel, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_compact, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests_name("kv", tests, itest_etcd_up, itest_etcd_down);
}
