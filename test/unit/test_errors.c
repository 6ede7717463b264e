/* Unit tests for the error space (src/common/error.c) and the gRPC status + etcd message
 * to ETCDREG code mapping (src/etcd/status_map.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "etcd/internal.h"
#include "etcdreg/error.h"
#include "grpc/framing.h"

typedef struct {
  int value;
  const char *name;
  const char *msg;
} err_entry_t;

static const err_entry_t all_errors[] = {
#define ENTRY_(name, value, msg) {value, "ETCDREG_" #name, msg},
    ETCDREG_ERRNO_MAP(ENTRY_)
#undef ENTRY_
};
#define N_ERRORS (sizeof(all_errors) / sizeof(all_errors[0]))

static void test_every_code(void **state) {
  (void)state;
  assert_true(N_ERRORS >= 38); /* 38 codes in 0.1.0; codes are only ever added */
  for (size_t i = 0; i < N_ERRORS; i++) {
    const err_entry_t *e = &all_errors[i];
    assert_true(e->value < 0);
    assert_true(e->value > ETCDREG_ERRNO_LAST_);
    const char *name = etcdreg_err_name(e->value);
    const char *msg = etcdreg_strerror(e->value);
    assert_non_null(name);
    assert_non_null(msg);
    assert_string_equal(name, e->name);
    assert_string_equal(msg, e->msg);
    assert_true(strlen(msg) > 0);
    assert_true(strncmp(name, "ETCDREG_E", 9) == 0);
    assert_string_not_equal(msg, "unknown error code");
    assert_string_not_equal(name, "ETCDREG_UNKNOWN_CODE");
    for (size_t j = 0; j < i; j++) {
      if (all_errors[j].value == e->value) fail_msg("duplicate value %d", e->value);
      if (strcmp(etcdreg_err_name(all_errors[j].value), name) == 0) fail_msg("duplicate name %s", name);
      if (strcmp(etcdreg_strerror(all_errors[j].value), msg) == 0) fail_msg("duplicate message %s", msg);
    }
  }
}

static void test_codes_do_not_overlap_errno_or_uv(void **state) {
  (void)state;
  /* errno values are small positives (negated by libuv: UV_E* are > -4096 but the
   * library's codes live in -1001..-1499, outside libuv's set). */
  const int uv_codes[] = {UV_EINVAL, UV_ENOMEM, UV_ETIMEDOUT, UV_ECANCELED, UV_ECONNREFUSED,
                          UV_EAI_NONAME, UV_EOF, UV_EPERM, UV_EEXIST, UV_ENOTSUP, UV_EBUSY,
                          UV_EPROTO, UV_ENOENT, UV_ECONNRESET, UV_EPIPE};
  for (size_t i = 0; i < N_ERRORS; i++)
    for (size_t j = 0; j < sizeof(uv_codes) / sizeof(uv_codes[0]); j++)
      assert_int_not_equal(all_errors[i].value, uv_codes[j]);
  /* Spot-check a few stable values (they are ABI). */
  assert_int_equal(ETCDREG_EINVAL, -1001);
  assert_int_equal(ETCDREG_ECOMPACTED, -1102);
  assert_int_equal(ETCDREG_EAUTHFAILED, -1201);
  assert_int_equal(ETCDREG_ECONFLICT, -1301);
  assert_int_equal(ETCDREG_ETLS, -1401);
}

static void test_zero_and_unknown(void **state) {
  (void)state;
  assert_string_equal(etcdreg_strerror(0), "success");
  assert_non_null(etcdreg_err_name(0));
  assert_true(strlen(etcdreg_err_name(0)) > 0);
  const int unknown[] = {1, -1, -1000, -1017, -1999, -2000, 12345, INT32_MIN, INT32_MAX};
  for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
    assert_string_equal(etcdreg_strerror(unknown[i]), "unknown error code");
    assert_string_equal(etcdreg_err_name(unknown[i]), "ETCDREG_UNKNOWN_CODE");
  }
}

/* ---- gRPC status -> ETCDREG code ---- */

typedef struct {
  int code;
  const char *message;
  int want;
} map_case_t;

static void test_map_etcd_messages(void **state) {
  (void)state;
  static const map_case_t cases[] = {
      {16, "etcdserver: invalid auth token", ETCDREG_EINVALIDTOKEN},
      {3, "etcdserver: user name is empty", ETCDREG_EINVALIDTOKEN},
      {3, "etcdserver: revision of auth store is old", ETCDREG_EINVALIDTOKEN},
      {3, "etcdserver: authentication failed, invalid user ID or password", ETCDREG_EAUTHFAILED},
      {7, "etcdserver: permission denied", ETCDREG_EPERM},
      {14, "etcdserver: no leader", ETCDREG_ENOLEADER},
      {14, "etcdserver: leader changed", ETCDREG_EUNAVAILABLE},
      {11, "etcdserver: mvcc: required revision has been compacted", ETCDREG_ECOMPACTED},
      {11, "etcdserver: mvcc: required revision is a future revision", ETCDREG_EFUTUREREV},
      {8, "etcdserver: mvcc: database space exceeded", ETCDREG_ENOSPACE},
      {3, "etcdserver: request is too large", ETCDREG_ETOOLARGE},
      {3, "etcdserver: too many operations in txn request", ETCDREG_ETOOMANYOPS},
      {3, "etcdserver: duplicate key given in txn request", ETCDREG_EDUPKEY},
      {5, "etcdserver: requested lease not found", ETCDREG_ELEASENOTFOUND},
      {3, "etcdserver: authentication is not enabled", ETCDREG_EAUTHNOTENABLED},
      {3, "etcdserver: key is not provided", ETCDREG_EINVAL},
      {11, "out of range", ETCDREG_EINVAL},
      {11, "etcdserver: revision out of range", ETCDREG_EINVAL},
      {4, "context deadline exceeded", ETCDREG_ETIMEDOUT},
      {4, "", ETCDREG_ETIMEDOUT},
      {1, "context canceled", ETCDREG_ECANCELED},
      {12, "unknown service etcdserverpb.Foo", ETCDREG_EUNIMPLEMENTED},
      {13, "etcdserver: corrupt cluster", ETCDREG_EINTERNAL},
      {15, "data loss", ETCDREG_EINTERNAL},
      {8, "grpc: received message larger than max (5000 vs. 4096)", ETCDREG_ETOOLARGE},
      {8, "something else", ETCDREG_ERESOURCE},
      {5, "not found", ETCDREG_ENOTFOUND},
      {6, "already exists", ETCDREG_EEXIST},
      {10, "aborted", ETCDREG_ECONFLICT},
      {0, "", 0},
      {0, "etcdserver: no leader", 0},
      {99, "etcdserver: no leader", ETCDREG_EUNKNOWN},
      {2, "whatever", ETCDREG_EUNKNOWN},
      {-1, "", ETCDREG_EUNKNOWN},
      {17, "", ETCDREG_EUNKNOWN},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int got = etcdreg__map_grpc_status(cases[i].code, cases[i].message);
    if (got != cases[i].want)
      fail_msg("map(%d, \"%s\") = %s, expected %s", cases[i].code, cases[i].message,
               etcdreg_err_name(got), etcdreg_err_name(cases[i].want));
  }
}

static void test_map_null_message(void **state) {
  (void)state;
  /* A NULL message is handled like an absent one: the code alone decides. */
  for (int code = 0; code <= 17; code++) {
    int a = etcdreg__map_grpc_status(code, NULL);
    int b = etcdreg__map_grpc_status(code, "");
    assert_int_equal(a, b);
  }
  assert_int_equal(etcdreg__map_grpc_status(0, NULL), 0);
  assert_int_equal(etcdreg__map_grpc_status(3, NULL), ETCDREG_EINVAL);
  assert_int_equal(etcdreg__map_grpc_status(5, NULL), ETCDREG_ENOTFOUND);
  assert_int_equal(etcdreg__map_grpc_status(11, NULL), ETCDREG_EINVAL);
  assert_int_equal(etcdreg__map_grpc_status(14, NULL), ETCDREG_EUNAVAILABLE);
  assert_int_equal(etcdreg__map_grpc_status(16, NULL), ETCDREG_EINVALIDTOKEN);
  assert_int_equal(etcdreg__map_grpc_status(99, NULL), ETCDREG_EUNKNOWN);
}

static void test_map_every_code_is_known(void **state) {
  (void)state;
  /* Every gRPC code maps to 0 or a code this library can name. */
  for (int code = 0; code <= 16; code++) {
    int e = etcdreg__map_grpc_status(code, "x");
    if (code == 0) {
      assert_int_equal(e, 0);
      continue;
    }
    assert_true(e < 0);
    assert_string_not_equal(etcdreg_err_name(e), "ETCDREG_UNKNOWN_CODE");
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_code),
      cmocka_unit_test(test_codes_do_not_overlap_errno_or_uv),
      cmocka_unit_test(test_zero_and_unknown),
      cmocka_unit_test(test_map_etcd_messages),
      cmocka_unit_test(test_map_null_message),
      cmocka_unit_test(test_map_every_code_is_known),
  };
  return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
