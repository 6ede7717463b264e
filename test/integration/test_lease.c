/* Unary lease calls (grant, revoke, time-to-live, list) against a real etcd. Keepalive
 * has its own suite. */
#include "itest.h"

typedef struct {
  uv_loop_t loop;
  etcdreg_client_t *c;
} lease_fixture_t;

static int fx_setup(void **state) {
  lease_fixture_t *f = calloc(1, sizeof(*f));
  uv_loop_init(&f->loop);
  f->c = itest_client(&f->loop, g_etcd.endpoint, NULL);
  *state = f;
  return 0;
}

static int fx_teardown(void **state) {
  lease_fixture_t *f = *state;
  itest_close(&f->loop, f->c);
  free(f);
  return 0;
}

/* ---- captures (copied out of the borrowed results) ---- */

#define MAX_KEYS 16
typedef struct {
  int done, calls, status, grpc_status;
  char message[512];
  int64_t revision;
  int64_t id, ttl, granted_ttl;      /* grant: id, ttl; time-to-live: all three */
  size_t key_count;
  char keys[MAX_KEYS][128];
  int64_t *ids;                      /* list: malloc'd copy */
  size_t id_count;
} lease_cap_t;

static void cap_reset(lease_cap_t *r) {
  free(r->ids);
  memset(r, 0, sizeof(*r));
}

static void cap_begin(lease_cap_t *r, etcdreg_request_t *req, int status) {
  r->calls++;
  r->done = 1;
  r->status = status;
  r->grpc_status = etcdreg_request_grpc_status(req);
  snprintf(r->message, sizeof(r->message), "%s", etcdreg_request_message(req));
}

static void on_grant(etcdreg_request_t *req, int status, const etcdreg_lease_grant_result_t *res, void *data) {
  lease_cap_t *r = data;
  cap_begin(r, req, status);
  if (status) {
    assert_null(res);
    return;
  }
  r->revision = res->header.revision;
  r->id = res->id;
  r->ttl = res->ttl;
}

static void on_revoke(etcdreg_request_t *req, int status, const etcdreg_lease_revoke_result_t *res, void *data) {
  lease_cap_t *r = data;
  cap_begin(r, req, status);
  if (status) {
    assert_null(res);
    return;
  }
  r->revision = res->header.revision;
}

static void on_ttl(etcdreg_request_t *req, int status, const etcdreg_lease_ttl_result_t *res, void *data) {
  lease_cap_t *r = data;
  cap_begin(r, req, status);
  if (status) {
    assert_null(res);
    return;
  }
  r->revision = res->header.revision;
  r->id = res->id;
  r->ttl = res->ttl;
  r->granted_ttl = res->granted_ttl;
  r->key_count = res->key_count;
  for (size_t i = 0; i < res->key_count && i < MAX_KEYS; i++)
    snprintf(r->keys[i], sizeof(r->keys[i]), "%.*s", (int)res->keys[i].len, (const char *)res->keys[i].data);
}

static void on_list(etcdreg_request_t *req, int status, const etcdreg_lease_list_result_t *res, void *data) {
  lease_cap_t *r = data;
  cap_begin(r, req, status);
  if (status) {
    assert_null(res);
    return;
  }
  r->revision = res->header.revision;
  r->id_count = res->count;
  if (res->count) {
    r->ids = malloc(res->count * sizeof(int64_t));
    memcpy(r->ids, res->ids, res->count * sizeof(int64_t));
  }
}

/* Synchronous-looking wrappers: each runs the loop until the one callback. */
static void do_grant(lease_fixture_t *f, int64_t ttl, int64_t id, lease_cap_t *r) {
  cap_reset(r);
  assert_int_equal(etcdreg_lease_grant(f->c, ttl, id, 0, on_grant, r, NULL), 0);
  assert_int_equal(r->calls, 0); /* never from inside the call */
  itest_run_until(&f->loop, &r->done, 15000);
  assert_int_equal(r->calls, 1);
}

static void do_revoke(lease_fixture_t *f, int64_t id, lease_cap_t *r) {
  cap_reset(r);
  assert_int_equal(etcdreg_lease_revoke(f->c, id, 0, on_revoke, r, NULL), 0);
  itest_run_until(&f->loop, &r->done, 15000);
  assert_int_equal(r->calls, 1);
}

static void do_ttl(lease_fixture_t *f, int64_t id, int keys, lease_cap_t *r) {
  cap_reset(r);
  assert_int_equal(etcdreg_lease_time_to_live(f->c, id, keys, 0, on_ttl, r, NULL), 0);
  itest_run_until(&f->loop, &r->done, 15000);
  assert_int_equal(r->calls, 1);
}

static void do_list(lease_fixture_t *f, lease_cap_t *r) {
  cap_reset(r);
  assert_int_equal(etcdreg_lease_list(f->c, 0, on_list, r, NULL), 0);
  itest_run_until(&f->loop, &r->done, 15000);
  assert_int_equal(r->calls, 1);
}

static int list_has(const lease_cap_t *r, int64_t id) {
  for (size_t i = 0; i < r->id_count; i++)
    if (r->ids[i] == id) return 1;
  return 0;
}

/* ---- tests ---- */

static void test_lease_grant(void **state) {
  lease_fixture_t *f = *state;
  lease_cap_t r = {0};
  do_grant(f, 5, 0, &r);
  assert_int_equal(r.status, 0);
  assert_true(r.id > 0);
  assert_true(r.ttl >= 5);
  assert_true(r.revision > 0);
  int64_t id = r.id;
  /* A second server-chosen lease gets another id. */
  do_grant(f, 5, 0, &r);
  assert_int_equal(r.status, 0);
  assert_true(r.id > 0);
  assert_true(r.id != id);
  int64_t id2 = r.id;
  do_revoke(f, id, &r);
  assert_int_equal(r.status, 0);
  do_revoke(f, id2, &r);
  assert_int_equal(r.status, 0);
  cap_reset(&r);
}

static void test_lease_grant_chosen_id(void **state) {
  lease_fixture_t *f = *state;
  const int64_t id = 0x1234abcd;
  lease_cap_t r = {0};
  do_grant(f, 5, id, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.id, id);
  assert_true(r.ttl >= 5);
  /* The same id again: etcd 3.4 answers FailedPrecondition "etcdserver: lease already
   * exists", mapped to ETCDREG_EEXIST. */
  do_grant(f, 5, id, &r);
  assert_int_equal(r.status, ETCDREG_EEXIST);
  assert_int_equal(r.grpc_status, 9);
  assert_non_null(strstr(r.message, "lease already exists"));
  do_revoke(f, id, &r);
  assert_int_equal(r.status, 0);
  cap_reset(&r);
}

static void test_lease_lifecycle(void **state) {
  lease_fixture_t *f = *state;
  lease_cap_t r = {0};
  do_grant(f, 5, 0, &r);
  assert_int_equal(r.status, 0);
  const int64_t id = r.id;

  etcdreg_put_opts_t po = {.lease = id};
  itest_put(&f->loop, f->c, "/lease/lc/k", "v", &po);
  itest_result_t kv = {0};
  itest_range(&f->loop, f->c, "/lease/lc/k", NULL, &kv);
  assert_int_equal(kv.status, 0);
  assert_int_equal(kv.kv_count, 1);
  assert_int_equal(kv.kvs[0].lease, id);

  /* Time to live, with the attached keys. */
  do_ttl(f, id, 1, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.id, id);
  assert_true(r.ttl > 0);
  assert_true(r.ttl <= 5);
  assert_int_equal(r.granted_ttl, 5);
  assert_int_equal(r.key_count, 1);
  assert_string_equal(r.keys[0], "/lease/lc/k");
  /* Without keys. */
  do_ttl(f, id, 0, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.key_count, 0);
  assert_int_equal(r.granted_ttl, 5);

  /* The list holds it. */
  do_list(f, &r);
  assert_int_equal(r.status, 0);
  assert_true(r.id_count >= 1);
  assert_true(list_has(&r, id));

  /* Revoke: the key goes at once. */
  do_revoke(f, id, &r);
  assert_int_equal(r.status, 0);
  assert_true(r.revision > 0);
  itest_range(&f->loop, f->c, "/lease/lc/k", NULL, &kv);
  assert_int_equal(kv.status, 0);
  assert_int_equal(kv.kv_count, 0);

  /* Revoke again: NotFound "etcdserver: requested lease not found". */
  do_revoke(f, id, &r);
  assert_int_equal(r.status, ETCDREG_ELEASENOTFOUND);
  assert_int_equal(r.grpc_status, 5);
  assert_non_null(strstr(r.message, "lease not found"));

  /* Time to live of a revoked lease is not an error: etcd answers TTL -1. */
  do_ttl(f, id, 1, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.id, id);
  assert_int_equal(r.ttl, -1);
  assert_int_equal(r.granted_ttl, 0);
  assert_int_equal(r.key_count, 0);

  /* Nor in the list any more. */
  do_list(f, &r);
  assert_int_equal(r.status, 0);
  assert_false(list_has(&r, id));

  /* A lease that never existed behaves the same. */
  do_revoke(f, 0x7fff0000beefLL, &r);
  assert_int_equal(r.status, ETCDREG_ELEASENOTFOUND);
  do_ttl(f, 0x7fff0000beefLL, 0, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.ttl, -1);

  itest_result_reset(&kv);
  cap_reset(&r);
}

/* Expiry without keepalive: poll the key every 200 ms until it is gone. */
typedef struct {
  lease_fixture_t *f;
  uv_timer_t timer;
  int in_flight;
  int gone;
  int polls;
  int errors;
  uint64_t gone_at;
} poll_t;

static void on_poll_range(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  (void)req;
  poll_t *p = data;
  p->in_flight = 0;
  p->polls++;
  if (status) {
    p->errors++;
    return;
  }
  if (res->kv_count == 0 && !p->gone) {
    p->gone = 1;
    p->gone_at = uv_now(etcdreg_client_loop(p->f->c));
    uv_timer_stop(&p->timer);
  }
}

static void on_poll_timer(uv_timer_t *t) {
  poll_t *p = t->data;
  if (p->in_flight || p->gone) return;
  p->in_flight = 1;
  int rv = etcdreg_range(p->f->c, "/lease/exp/k", 12, NULL, on_poll_range, p, NULL);
  if (rv) {
    p->in_flight = 0;
    p->errors++;
  }
}

static void test_lease_expiry(void **state) {
  lease_fixture_t *f = *state;
  lease_cap_t r = {0};
  uv_update_time(&f->loop);
  uint64_t t0 = uv_now(&f->loop);
  do_grant(f, 1, 0, &r);
  assert_int_equal(r.status, 0);
  /* etcd raises a TTL below its minimum (1.5 election timeouts, rounded up: 2 s with the
   * defaults) and says so in the answer. */
  assert_true(r.ttl >= 1);
  const int64_t id = r.id, granted = r.ttl;

  etcdreg_put_opts_t po = {.lease = id};
  itest_put(&f->loop, f->c, "/lease/exp/k", "v", &po);

  poll_t p = {0};
  p.f = f;
  uv_timer_init(&f->loop, &p.timer);
  p.timer.data = &p;
  uv_timer_start(&p.timer, on_poll_timer, 0, 200);
  itest_run_until(&f->loop, &p.gone, 20000);
  /* Let a poll still in flight finish before the timer goes. */
  while (p.in_flight) uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&p.timer, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);

  assert_int_equal(p.errors, 0);
  assert_true(p.polls >= 1);
  uint64_t elapsed = p.gone_at - t0;
  fprintf(stderr, "lease of %lld s (granted %lld s): key gone after %llu ms, %d polls\n", 1LL,
          (long long)granted, (unsigned long long)elapsed, p.polls);
  /* Generous: the TTL etcd granted plus 3 s for its expiry check and the revoke. */
  assert_true(elapsed <= (uint64_t)granted * 1000 + 3000);

  /* The expired lease is gone too. */
  do_ttl(f, id, 0, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.ttl, -1);
  cap_reset(&r);
}

static void test_lease_bad_args(void **state) {
  lease_fixture_t *f = *state;
  lease_cap_t r = {0};
  etcdreg_request_t *req = NULL;
  assert_int_equal(etcdreg_lease_grant(f->c, 0, 0, 0, on_grant, &r, &req), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_lease_grant(f->c, -5, 0, 0, on_grant, &r, &req), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_lease_grant(f->c, 5, -1, 0, on_grant, &r, &req), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_lease_grant(f->c, 5, 0, 0, NULL, &r, &req), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_lease_grant(NULL, 5, 0, 0, on_grant, &r, &req), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_lease_revoke(f->c, 0, 0, on_revoke, &r, &req), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_lease_revoke(f->c, -1, 0, on_revoke, &r, &req), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_lease_revoke(f->c, 1, 0, NULL, &r, &req), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_lease_time_to_live(f->c, 0, 1, 0, on_ttl, &r, &req), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_lease_time_to_live(f->c, -1, 0, 0, on_ttl, &r, &req), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_lease_time_to_live(f->c, 1, 0, 0, NULL, &r, &req), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_lease_list(f->c, 0, NULL, &r, &req), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_lease_list(NULL, 0, on_list, &r, &req), ETCDREG_EINVAL);
  assert_null(req);
  for (int i = 0; i < 5; i++) uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(r.calls, 0);
  /* The client is still fine. */
  do_list(f, &r);
  assert_int_equal(r.status, 0);
  cap_reset(&r);
}

static void test_lease_closed_client(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  /* One call in flight when the client closes: it completes with ECANCELED. */
  lease_cap_t pending = {0};
  assert_int_equal(etcdreg_lease_list(c, 0, on_list, &pending, NULL), 0);
  int closed = 0;
  assert_int_equal(etcdreg_client_close(c, itest_on_closed, &closed), 0);
  lease_cap_t r = {0};
  assert_int_equal(etcdreg_lease_grant(c, 5, 0, 0, on_grant, &r, NULL), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_lease_revoke(c, 1, 0, on_revoke, &r, NULL), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_lease_time_to_live(c, 1, 0, 0, on_ttl, &r, NULL), ETCDREG_ECLOSED);
  assert_int_equal(etcdreg_lease_list(c, 0, on_list, &r, NULL), ETCDREG_ECLOSED);
  itest_run_until(&loop, &closed, 10000);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(r.calls, 0);
  assert_int_equal(pending.calls, 1);
  assert_int_equal(pending.status, ETCDREG_ECANCELED);
  cap_reset(&pending);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_lease_grant, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_lease_grant_chosen_id, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_lease_lifecycle, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_lease_expiry, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_lease_bad_args, fx_setup, fx_teardown),
      cmocka_unit_test(test_lease_closed_client),
  };
  return cmocka_run_group_tests_name("lease", tests, itest_etcd_up, itest_etcd_down);
}
