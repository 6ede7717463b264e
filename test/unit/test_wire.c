/* Unit tests for the small gRPC wire helpers in src/grpc/framing.c: grpc-timeout
 * encoding/decoding, grpc-message percent-decoding, HTTP status -> gRPC status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "grpc/framing.h"

/* 99999999 hours in ms: the largest grpc-timeout value there is. */
#define MAX_TIMEOUT_MS (99999999ULL * 3600000ULL)

/* A grpc-timeout value is 1 to 8 ASCII digits followed by one of H M S m u n. */
static int timeout_valid(const char *s, size_t len) {
  if (len < 2 || len > 9 || strlen(s) != len) return 0;
  for (size_t i = 0; i + 1 < len; i++)
    if (s[i] < '0' || s[i] > '9') return 0;
  return strchr("HMSmun", s[len - 1]) != NULL && s[len - 1] != '\0';
}

static int64_t decode_str(const char *s) {
  /* Exact-size heap copy without a terminator: ASan catches over-reads. */
  size_t n = strlen(s);
  char *tmp = malloc(n ? n : 1);
  assert_non_null(tmp);
  memcpy(tmp, s, n);
  int64_t v = etcdreg_grpc_timeout_decode(tmp, n);
  free(tmp);
  return v;
}

static void expect_encode(uint64_t ms, const char *want) {
  char out[16];
  memset(out, 'X', sizeof(out));
  size_t n = etcdreg_grpc_timeout_encode(ms, out);
  assert_string_equal(out, want);
  assert_int_equal(n, strlen(want));
}

/* ---- grpc-timeout encode ---- */

static void test_timeout_encode_exact(void **state) {
  (void)state;
  expect_encode(1, "1m");
  expect_encode(100, "100m");
  expect_encode(5000, "5000m");
  expect_encode(12345678, "12345678m");
  expect_encode(99999999, "99999999m");
  /* Milliseconds no longer fit in 8 digits: seconds, rounded up. */
  expect_encode(100000000, "100000S");
  expect_encode(100000001, "100001S");
  expect_encode(100000999, "100001S");
  expect_encode(100001000, "100001S");
  expect_encode(99999999000ULL, "99999999S");
  expect_encode(99999999001ULL, "1666667M");
  expect_encode(99999999ULL * 60000ULL, "99999999M");
  expect_encode(99999999ULL * 60000ULL + 1, "1666667H");
  expect_encode(MAX_TIMEOUT_MS, "99999999H");
}

static void test_timeout_encode_zero(void **state) {
  (void)state;
  char out[16];
  size_t n = etcdreg_grpc_timeout_encode(0, out);
  assert_true(timeout_valid(out, n));
  assert_true(decode_str(out) >= 0);
}

static void test_timeout_encode_valid_and_roundup(void **state) {
  (void)state;
  /* Every encoding is valid and never shortens the deadline: decode(encode(x)) >= x,
   * and it does not exceed x by more than one unit of the chosen encoding. */
  uint64_t vals[4000];
  size_t n = 0;
  for (uint64_t x = 0; x < 1200; x++) vals[n++] = x;
  for (uint64_t p = 10; p <= MAX_TIMEOUT_MS && n + 3 <= 4000; p *= 10) {
    vals[n++] = p - 1;
    vals[n++] = p;
    vals[n++] = p + 1;
  }
  uint64_t x = 1;
  while (n < 4000) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    vals[n++] = (x >> 16) % (MAX_TIMEOUT_MS + 1);
  }
  for (size_t i = 0; i < n; i++) {
    char out[16];
    size_t len = etcdreg_grpc_timeout_encode(vals[i], out);
    if (!timeout_valid(out, len)) fail_msg("encode(%llu) = \"%s\" is not valid", (unsigned long long)vals[i], out);
    int64_t back = decode_str(out);
    if (back < 0 || (uint64_t)back < vals[i])
      fail_msg("decode(encode(%llu)) = %lld (\"%s\")", (unsigned long long)vals[i], (long long)back, out);
    uint64_t unit = 1;
    switch (out[len - 1]) {
    case 'S': unit = 1000; break;
    case 'M': unit = 60000; break;
    case 'H': unit = 3600000; break;
    default: break;
    }
    if ((uint64_t)back - vals[i] >= unit && vals[i] != 0)
      fail_msg("encode(%llu) = \"%s\" rounds up by a whole unit or more", (unsigned long long)vals[i], out);
  }
}

static void test_timeout_encode_huge_within_limits(void **state) {
  (void)state;
  /* Values beyond what grpc-timeout can express stay valid (at most 8 digits). */
  const uint64_t huge[] = {MAX_TIMEOUT_MS + 1, MAX_TIMEOUT_MS * 2, 1ULL << 62,
                           UINT64_MAX / 2, UINT64_MAX - 3600000ULL};
  for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
    char out[16];
    size_t len = etcdreg_grpc_timeout_encode(huge[i], out);
    if (!timeout_valid(out, len)) fail_msg("encode(%llu) = \"%s\"", (unsigned long long)huge[i], out);
    /* Saturates at the largest expressible timeout. */
    if (decode_str(out) != (int64_t)MAX_TIMEOUT_MS)
      fail_msg("encode(%llu) = \"%s\", expected the maximum 99999999H", (unsigned long long)huge[i], out);
  }
}

/* Regression: (ms + unit - 1) used to overflow near UINT64_MAX and encode tiny timeouts. */
static void test_timeout_encode_near_uint64_max(void **state) {
  (void)state;
  const uint64_t huge[] = {UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 998, UINT64_MAX - 59998,
                           UINT64_MAX - 3599998ULL};
  for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
    char out[16];
    size_t len = etcdreg_grpc_timeout_encode(huge[i], out);
    if (!timeout_valid(out, len)) fail_msg("encode(%llu) = \"%s\"", (unsigned long long)huge[i], out);
    if (decode_str(out) != (int64_t)MAX_TIMEOUT_MS)
      fail_msg("encode(%llu) = \"%s\", expected 99999999H", (unsigned long long)huge[i], out);
  }
}

/* ---- grpc-timeout decode ---- */

static void test_timeout_decode_units(void **state) {
  (void)state;
  assert_int_equal(decode_str("1H"), 3600000);
  assert_int_equal(decode_str("2M"), 120000);
  assert_int_equal(decode_str("3S"), 3000);
  assert_int_equal(decode_str("4m"), 4);
  assert_int_equal(decode_str("0m"), 0);
  assert_int_equal(decode_str("00000007m"), 7);
  assert_int_equal(decode_str("99999999H"), (int64_t)MAX_TIMEOUT_MS);
  assert_int_equal(decode_str("12345678m"), 12345678);
  /* Sub-millisecond units round up. */
  assert_int_equal(decode_str("1u"), 1);
  assert_int_equal(decode_str("1000u"), 1);
  assert_int_equal(decode_str("1001u"), 2);
  assert_int_equal(decode_str("0u"), 0);
  assert_int_equal(decode_str("1n"), 1);
  assert_int_equal(decode_str("1000000n"), 1);
  assert_int_equal(decode_str("1000001n"), 2);
  assert_int_equal(decode_str("99999999n"), 100);
  /* Only `len` bytes are looked at. */
  assert_int_equal(etcdreg_grpc_timeout_decode("12m999", 3), 12);
}

static void test_timeout_decode_malformed(void **state) {
  (void)state;
  const char *bad[] = {"", "m", "S", "123", "12x", "123456789m", "1234567890S", "-1m", "+1m",
                       " 1m", "1 m", "1.5S", "1h", "1s", "1k", "m1", "1mm", "0x1m", "1\0m"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int64_t v = decode_str(bad[i]);
    if (v != -1) fail_msg("decode(\"%s\") = %lld, expected -1", bad[i], (long long)v);
  }
  /* Embedded NUL inside the given length. */
  assert_int_equal(etcdreg_grpc_timeout_decode("1\0m", 3), -1);
}

/* ---- grpc-message percent-decoding ---- */

static void expect_pct(const char *in, const char *want) {
  size_t n = strlen(in);
  char *tmp = malloc(n ? n : 1); /* exact size, no terminator */
  assert_non_null(tmp);
  memcpy(tmp, in, n);
  char *out = etcdreg_grpc_percent_decode(tmp, n);
  free(tmp);
  assert_non_null(out);
  if (strcmp(out, want) != 0) {
    char msg[256];
    snprintf(msg, sizeof(msg), "percent_decode(\"%s\") = \"%s\", expected \"%s\"", in, out, want);
    free(out);
    fail_msg("%s", msg);
  }
  free(out);
}

static void test_percent_decode(void **state) {
  (void)state;
  expect_pct("", "");
  expect_pct("etcdserver: permission denied", "etcdserver: permission denied");
  expect_pct("%20", " ");
  expect_pct("%E2%82%AC", "\xe2\x82\xac");
  expect_pct("%e2%82%ac", "\xe2\x82\xac");
  expect_pct("%4a%4A", "JJ");
  expect_pct("a%20b%2Fc", "a b/c");
  expect_pct("100%25 sure", "100% sure");
  expect_pct("%41%42%43", "ABC");
}

static void test_percent_decode_malformed_kept(void **state) {
  (void)state;
  expect_pct("%", "%");
  expect_pct("%2", "%2");
  expect_pct("%zz", "%zz");
  expect_pct("abc%", "abc%");
  expect_pct("abc%4", "abc%4");
  expect_pct("%G1", "%G1");
  expect_pct("%1G", "%1G");
  expect_pct("%%41", "%A");
  expect_pct("%41%", "A%");
  expect_pct("x %zz y %20 z", "x %zz y   z");
  expect_pct("%%%", "%%%");
}

static void test_percent_decode_nul_and_len(void **state) {
  (void)state;
  /* Only `len` bytes are decoded and the result is always NUL-terminated. */
  char *out = etcdreg_grpc_percent_decode("ab%20cd", 4);
  assert_non_null(out);
  assert_string_equal(out, "ab%2");
  free(out);
  out = etcdreg_grpc_percent_decode("%41", 0);
  assert_non_null(out);
  assert_string_equal(out, "");
  free(out);
}

/* ---- HTTP status -> gRPC status ---- */

static void test_status_from_http(void **state) {
  (void)state;
  assert_int_equal(etcdreg_grpc_status_from_http(400), ETCDREG_GRPC_INTERNAL);
  assert_int_equal(etcdreg_grpc_status_from_http(400), 13);
  assert_int_equal(etcdreg_grpc_status_from_http(401), 16);
  assert_int_equal(etcdreg_grpc_status_from_http(403), 7);
  assert_int_equal(etcdreg_grpc_status_from_http(404), 12);
  assert_int_equal(etcdreg_grpc_status_from_http(429), 14);
  assert_int_equal(etcdreg_grpc_status_from_http(502), 14);
  assert_int_equal(etcdreg_grpc_status_from_http(503), 14);
  assert_int_equal(etcdreg_grpc_status_from_http(504), 14);
  assert_int_equal(etcdreg_grpc_status_from_http(200), 2);
  assert_int_equal(etcdreg_grpc_status_from_http(500), 2);
  assert_int_equal(etcdreg_grpc_status_from_http(302), 2);
  assert_int_equal(etcdreg_grpc_status_from_http(0), 2);
  assert_int_equal(etcdreg_grpc_status_from_http(-1), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_timeout_encode_exact),
      cmocka_unit_test(test_timeout_encode_zero),
      cmocka_unit_test(test_timeout_encode_valid_and_roundup),
      cmocka_unit_test(test_timeout_encode_huge_within_limits),
      cmocka_unit_test(test_timeout_encode_near_uint64_max),
      cmocka_unit_test(test_timeout_decode_units),
      cmocka_unit_test(test_timeout_decode_malformed),
      cmocka_unit_test(test_percent_decode),
      cmocka_unit_test(test_percent_decode_malformed_kept),
      cmocka_unit_test(test_percent_decode_nul_and_len),
      cmocka_unit_test(test_status_from_http),
  };
  return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
