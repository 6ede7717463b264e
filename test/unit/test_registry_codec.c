/* Unit tests for the registry codec (src/registry/codec.c): base path cleaning, keys,
 * validation messages, label merge, RFC 3339 times and the Go-compatible JSON. The JSON
 * strings marked "Go" are values the Go library wrote (shared/seed-spec.md §3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "registry/codec.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------------------------------- */
/* base path and keys                                                                        */

static void test_base_clean_table(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
  } ok[] = {
      {"/test", "/test"},         {"/test/", "/test"},     {"//a//b/", "/a/b"},      {"test", "test"},
      {"test/", "test"},          {"/services", "/services"}, {"/a/./b/../c", "/a/c"}, {"a/../b", "b"},
      {"../x", "../x"},           {"../../x/", "../../x"}, {"/../x", "/x"},          {"./a", "a"},
      {"a/b/..//c/./", "a/c"},    {" /x ", " /x "},        {"/a/b/../../c", "/c"},  {"..", ".."},
      {"/a/...", "/a/..."},       {"a//..b", "a/..b"},
  };
  for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
    char *out = (char *)"sentinel";
    char err[128] = "x";
    int rv = etcdreg__base_clean(ok[i].in, &out, err, sizeof(err));
    if (rv != 0) fail_msg("base %s: rv %d (%s)", ok[i].in, rv, err);
    assert_string_equal(err, "");
    if (strcmp(out, ok[i].out) != 0) fail_msg("base \"%s\": got \"%s\", want \"%s\"", ok[i].in, out, ok[i].out);
    free(out);
  }
  static const struct {
    const char *in, *msg;
  } bad[] = {
      {"", "etcd base path cannot be empty"},        {"   ", "etcd base path cannot be empty"},
      {"\t\r\n\v\f ", "etcd base path cannot be empty"}, {"\xc2\xa0\xe3\x80\x80", "etcd base path cannot be empty"},
      {"/", "etcd base path cannot be the root"},    {"//", "etcd base path cannot be the root"},
      {".", "etcd base path cannot be the root"},    {"./", "etcd base path cannot be the root"},
      {"a/..", "etcd base path cannot be the root"}, {"/a/../..", "etcd base path cannot be the root"},
      {"/./", "etcd base path cannot be the root"},
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    char *out = (char *)"sentinel";
    char err[128] = "";
    assert_int_equal(etcdreg__base_clean(bad[i].in, &out, err, sizeof(err)), ETCDREG_EINVAL);
    assert_null(out);
    if (strcmp(err, bad[i].msg) != 0) fail_msg("base \"%s\": got \"%s\"", bad[i].in, err);
  }
  char *out = (char *)"sentinel";
  char err[128] = "";
  assert_int_equal(etcdreg__base_clean(NULL, &out, err, sizeof(err)), ETCDREG_EINVAL);
  assert_null(out);
  assert_string_equal(err, "etcd base path cannot be empty");
  /* no error buffer: still a code, no crash */
  assert_int_equal(etcdreg__base_clean("/", &out, NULL, 0), ETCDREG_EINVAL);
  assert_int_equal(etcdreg__base_clean("/", NULL, err, sizeof(err)), ETCDREG_EINVAL);
  /* truncation of the message */
  char tiny[6];
  assert_int_equal(etcdreg__base_clean("", &out, tiny, sizeof(tiny)), ETCDREG_EINVAL);
  assert_string_equal(tiny, "etcd ");
}

/* "/test" and "/test/" give identical keys; "//a//b/" gives /a/b/g (seed-spec §2). */
static void test_keys(void **state) {
  (void)state;
  const char *bases[] = {"/test", "/test/", "//test//"};
  for (size_t i = 0; i < ARRAY_LEN(bases); i++) {
    char *b = NULL;
    assert_int_equal(etcdreg__base_clean(bases[i], &b, NULL, 0), 0);
    char *gk = etcdreg__group_key(b, "g");
    char *gp = etcdreg__group_prefix(b, "g");
    char *np = etcdreg__nodes_prefix(b, "g");
    char *nk = etcdreg__node_key(b, "g", "n1", "node_exporter");
    char *bp = etcdreg__base_prefix(b);
    assert_string_equal(gk, "/test/g");
    assert_string_equal(gp, "/test/g/");
    assert_string_equal(np, "/test/g/nodes/");
    assert_string_equal(nk, "/test/g/nodes/n1_node_exporter");
    assert_string_equal(bp, "/test/");
    free(gk);
    free(gp);
    free(np);
    free(nk);
    free(bp);
    free(b);
  }
  char *b = NULL;
  assert_int_equal(etcdreg__base_clean("//a//b/", &b, NULL, 0), 0);
  char *gk = etcdreg__group_key(b, "g");
  assert_string_equal(gk, "/a/b/g");
  free(gk);
  free(b);
  assert_int_equal(etcdreg__base_clean("test", &b, NULL, 0), 0);
  gk = etcdreg__group_key(b, "g");
  assert_string_equal(gk, "test/g"); /* relative stays relative */
  char *nk = etcdreg__node_key(b, "g", "a", "b_c");
  assert_string_equal(nk, "test/g/nodes/a_b_c");
  free(nk);
  free(gk);
  free(b);
  /* the group prefix of "grp" is not a prefix of "grp2"'s keys */
  char *p = etcdreg__group_prefix("/s", "grp");
  char *k2 = etcdreg__group_key("/s", "grp2");
  assert_true(strncmp(k2, p, strlen(p)) != 0);
  free(p);
  free(k2);
}

/* ---------------------------------------------------------------------------------------- */
/* validation                                                                                */

#define MSG_SPECIAL "invalid group name: must not contain spaces or special characters /\\?#[]"
#define MSG_LEN "group name must be 63 characters or less"
#define MSG_CHARS "group name must contain only alphanumeric characters, hyphens and underscores"

static void test_validate_group_name(void **state) {
  (void)state;
  char x63[64], x64[65], sp64[65], bang64[65];
  memset(x63, 'x', 63);
  x63[63] = 0;
  memset(x64, 'x', 64);
  x64[64] = 0;
  memcpy(sp64, x64, sizeof(sp64));
  sp64[10] = ' ';
  memcpy(bang64, x64, sizeof(bang64));
  bang64[10] = '!';
  static const char *good[] = {"g1", "-", "_", "nodes", "a_b-C9", "ABCxyz0123456789"};
  for (size_t i = 0; i < ARRAY_LEN(good); i++) {
    char err[160] = "x";
    if (etcdreg__validate_group_name(good[i], err, sizeof(err))) fail_msg("%s rejected: %s", good[i], err);
    assert_string_equal(err, "");
  }
  assert_int_equal(etcdreg__validate_group_name(x63, NULL, 0), 0);
  const struct {
    const char *in, *msg;
  } bad[] = {
      {"", "group name cannot be empty"},
      {NULL, "group name cannot be empty"},
      {"a b", MSG_SPECIAL},
      {"a/b", MSG_SPECIAL},
      {"a\\b", MSG_SPECIAL},
      {"a?b", MSG_SPECIAL},
      {"a#b", MSG_SPECIAL},
      {"a[b", MSG_SPECIAL},
      {"a]b", MSG_SPECIAL},
      {sp64, MSG_SPECIAL}, /* rule 2 before rule 3 */
      {x64, MSG_LEN},
      {bang64, MSG_LEN}, /* rule 3 before rule 4 */
      /* the Go library accepted these (ContainsAny); the port applies ^[A-Za-z0-9_-]{1,63}$ */
      {"a!b@c", MSG_CHARS},
      {"..a", MSG_CHARS},
      {"grp\t", MSG_CHARS},
      {"!!!", MSG_CHARS},
      {".", MSG_CHARS},
      {"..", MSG_CHARS},
      {"\xc3\xa9", MSG_CHARS},
      {"a.b", MSG_CHARS},
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    char err[160] = "";
    assert_int_equal(etcdreg__validate_group_name(bad[i].in, err, sizeof(err)), ETCDREG_EINVAL);
    if (strcmp(err, bad[i].msg) != 0) fail_msg("group %zu \"%s\": got \"%s\"", i, bad[i].in ? bad[i].in : "(null)", err);
  }
}

static etcdreg_node_t good_node(void) {
  etcdreg_node_t n = {.id = "n1", .exporter_type = "node_exporter", .port = 9100, .metrics_path = "/metrics"};
  return n;
}

static void expect_node_msg(const etcdreg_node_t *n, uint64_t ttl, const char *msg) {
  char err[200] = "";
  int rv = etcdreg__validate_node(n, ttl, err, sizeof(err));
  if (!msg) {
    if (rv) fail_msg("unexpected rejection: %s", err);
    assert_string_equal(err, "");
    return;
  }
  assert_int_equal(rv, ETCDREG_EINVAL);
  if (strcmp(err, msg) != 0) fail_msg("got \"%s\", want \"%s\"", err, msg);
}

static void test_validate_node(void **state) {
  (void)state;
  etcdreg_node_t n = good_node();
  expect_node_msg(&n, 1000, NULL);
  expect_node_msg(&n, 1, NULL);
  n.port = 65535;
  expect_node_msg(&n, 1000, NULL);
  n.port = 1;
  n.id = "...";
  n.exporter_type = "a_b";
  n.metrics_path = "metrics"; /* no leading '/' required */
  expect_node_msg(&n, 1000, NULL);

  /* order: every field wrong at once, fixed one by one */
  etcdreg_label_t bad_labels[] = {{"", "v"}};
  etcdreg_node_t b = {.id = "", .exporter_type = "", .port = 0, .metrics_path = "", .labels = bad_labels, .label_count = 1};
  expect_node_msg(&b, 0, "node ID must be non empty");
  b.id = NULL;
  expect_node_msg(&b, 0, "node ID must be non empty");
  b.id = "a/b";
  expect_node_msg(&b, 0, "exporter type must be non empty");
  b.exporter_type = "..";
  expect_node_msg(&b, 0, "node ID must not contain '/' or be '.' or '..'");
  b.id = ".";
  expect_node_msg(&b, 0, "node ID must not contain '/' or be '.' or '..'");
  b.id = "..";
  expect_node_msg(&b, 0, "node ID must not contain '/' or be '.' or '..'");
  b.id = "n/../x";
  expect_node_msg(&b, 0, "node ID must not contain '/' or be '.' or '..'");
  b.id = "n1";
  expect_node_msg(&b, 0, "exporter type must not contain '/' or be '.' or '..'");
  b.exporter_type = ".";
  expect_node_msg(&b, 0, "exporter type must not contain '/' or be '.' or '..'");
  b.exporter_type = "x/y";
  expect_node_msg(&b, 0, "exporter type must not contain '/' or be '.' or '..'");
  b.exporter_type = "t";
  expect_node_msg(&b, 0, "port must be > 0");
  b.port = -5;
  expect_node_msg(&b, 0, "port must be > 0");
  b.port = 65536;
  expect_node_msg(&b, 0, "port must be <= 65535");
  b.port = 70000;
  expect_node_msg(&b, 0, "port must be <= 65535");
  b.port = 80;
  expect_node_msg(&b, 0, "metrics path must be non empty");
  b.metrics_path = NULL;
  expect_node_msg(&b, 0, "metrics path must be non empty");
  b.metrics_path = "/m";
  expect_node_msg(&b, 0, "ttl must be > 0");
  expect_node_msg(&b, 1000, "empty label key not allowed");
  bad_labels[0].key = NULL;
  expect_node_msg(&b, 1000, "empty label key not allowed");
  bad_labels[0].key = "k";
  bad_labels[0].value = "";
  expect_node_msg(&b, 1000, "empty label value not allowed for key: k");
  bad_labels[0].value = NULL;
  expect_node_msg(&b, 1000, "empty label value not allowed for key: k");
  bad_labels[0].key = "a=b";
  bad_labels[0].value = "v";
  expect_node_msg(&b, 1000, "label key cannot contain '=': a=b");
  bad_labels[0].key = "ok";
  expect_node_msg(&b, 1000, NULL);

  /* labels are checked in sorted key order, whatever the input order */
  etcdreg_label_t l1[] = {{"zz", ""}, {"b=", "x"}, {"a", "1"}};
  etcdreg_label_t l2[] = {{"a", "1"}, {"b=", "x"}, {"zz", ""}};
  etcdreg_node_t m = good_node();
  m.labels = l1;
  m.label_count = 3;
  expect_node_msg(&m, 1000, "label key cannot contain '=': b=");
  m.labels = l2;
  expect_node_msg(&m, 1000, "label key cannot contain '=': b=");
  etcdreg_label_t l3[] = {{"y", "1"}, {"x", ""}, {"", "v"}};
  m.labels = l3;
  expect_node_msg(&m, 1000, "empty label key not allowed");
  etcdreg_label_t dup[] = {{"env", "a"}, {"x", "1"}, {"env", "b"}};
  m.labels = dup;
  expect_node_msg(&m, 1000, "duplicate label key: env");
  etcdreg_label_t fine[] = {{"env", "dev"}, {"region", "us"}, {"x", "<&>"}};
  m.labels = fine;
  expect_node_msg(&m, 1000, NULL);
  m.labels = NULL; /* count without array */
  assert_int_equal(etcdreg__validate_node(&m, 1000, NULL, 0), ETCDREG_EINVAL);
  assert_int_equal(etcdreg__validate_node(NULL, 1000, NULL, 0), ETCDREG_EINVAL);
}

static void expect_common_msg(const etcdreg_label_t *l, size_t n, const char *msg) {
  char err[200] = "";
  int rv = etcdreg__validate_common_labels(l, n, err, sizeof(err));
  if (!msg) {
    if (rv) fail_msg("unexpected rejection: %s", err);
    return;
  }
  assert_int_equal(rv, ETCDREG_EINVAL);
  if (strcmp(err, msg) != 0) fail_msg("got \"%s\", want \"%s\"", err, msg);
}

static void test_validate_common_labels(void **state) {
  (void)state;
  expect_common_msg(NULL, 0, NULL);
  etcdreg_label_t ok[] = {{"env", "prod"}, {"region", "us"}};
  expect_common_msg(ok, 2, NULL);
  etcdreg_label_t l[1];
  l[0] = (etcdreg_label_t){"", "v"};
  expect_common_msg(l, 1, "empty label key not allowed in CommonLabels");
  l[0] = (etcdreg_label_t){NULL, "v"};
  expect_common_msg(l, 1, "empty label key not allowed in CommonLabels");
  l[0] = (etcdreg_label_t){"env", ""};
  expect_common_msg(l, 1, "empty label value not allowed for key \"env\" in CommonLabels");
  l[0] = (etcdreg_label_t){"env", NULL};
  expect_common_msg(l, 1, "empty label value not allowed for key \"env\" in CommonLabels");
  l[0] = (etcdreg_label_t){"a=b", "v"};
  expect_common_msg(l, 1, "label key cannot contain '=' in CommonLabels: \"a=b\"");
  /* %q quoting */
  l[0] = (etcdreg_label_t){"q\"b\\=", "v"};
  expect_common_msg(l, 1, "label key cannot contain '=' in CommonLabels: \"q\\\"b\\\\=\"");
  l[0] = (etcdreg_label_t){"k\n\t\x01\x7f", ""};
  expect_common_msg(l, 1, "empty label value not allowed for key \"k\\n\\t\\x01\\x7f\" in CommonLabels");
  l[0] = (etcdreg_label_t){"\xc3\xa9\xff=", "v"};
  expect_common_msg(l, 1, "label key cannot contain '=' in CommonLabels: \"\xc3\xa9\\xff=\"");
  l[0] = (etcdreg_label_t){"a\xc2\xa0\xe2\x80\xa8=", "v"};
  expect_common_msg(l, 1, "label key cannot contain '=' in CommonLabels: \"a\\u00a0\\u2028=\"");
  l[0] = (etcdreg_label_t){"a b\a\b\f\r\v", ""};
  expect_common_msg(l, 1, "empty label value not allowed for key \"a b\\a\\b\\f\\r\\v\" in CommonLabels");
  l[0] = (etcdreg_label_t){"\xf3\xb0\x80\x80", ""}; /* U+F0000, private use */
  expect_common_msg(l, 1, "empty label value not allowed for key \"\\U000f0000\" in CommonLabels");
  /* sorted order and duplicates */
  etcdreg_label_t order[] = {{"z=", "v"}, {"b", ""}};
  expect_common_msg(order, 2, "empty label value not allowed for key \"b\" in CommonLabels");
  etcdreg_label_t dup[] = {{"env", "a"}, {"env", "b"}};
  expect_common_msg(dup, 2, "duplicate label key in CommonLabels: \"env\"");
  assert_int_equal(etcdreg__validate_common_labels(NULL, 1, NULL, 0), ETCDREG_EINVAL);
}

/* ---------------------------------------------------------------------------------------- */
/* labels                                                                                    */

static void test_labels_sort_copy(void **state) {
  (void)state;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  char k0[] = "b", v0[] = "1";
  etcdreg_label_t in[] = {{k0, v0}, {"a", "2"}, {"b", "3"}, {"B", "4"}, {"\xc3\xa9", "5"}, {NULL, NULL}};
  etcdreg_label_t *out = NULL;
  assert_int_equal(etcdreg__labels_sort_copy(&a, in, ARRAY_LEN(in), &out), 0);
  const char *keys[] = {"", "B", "a", "b", "b", "\xc3\xa9"};
  const char *vals[] = {"", "4", "2", "1", "3", "5"}; /* stable: b=1 before b=3 */
  for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
    assert_string_equal(out[i].key, keys[i]);
    assert_string_equal(out[i].value, vals[i]);
  }
  k0[0] = 'x'; /* copies, not references */
  v0[0] = 'y';
  assert_string_equal(out[3].key, "b");
  assert_string_equal(out[3].value, "1");
  out = (etcdreg_label_t *)in;
  assert_int_equal(etcdreg__labels_sort_copy(&a, NULL, 0, &out), 0);
  assert_null(out);
  etcdreg_arena_free(&a);
}

static void test_labels_merge(void **state) {
  (void)state;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  char nv[] = "node";
  etcdreg_label_t node[] = {{"b", nv}, {"a", ""}, {"x", "n1"}, {"x", "n2"}};
  etcdreg_label_t common[] = {{"c", "cc"}, {"a", "ca"}, {"b", "cb"}, {"d", "d1"}, {"d", "d2"}};
  etcdreg_label_t *out = NULL;
  size_t n = 0;
  assert_int_equal(etcdreg__labels_merge(&a, node, ARRAY_LEN(node), common, ARRAY_LEN(common), &out, &n), 0);
  const char *keys[] = {"a", "b", "c", "d", "x"};
  const char *vals[] = {"", "node", "cc", "d1", "n1"}; /* node wins (even ""), first wins */
  assert_int_equal(n, ARRAY_LEN(keys));
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(out[i].key, keys[i]);
    assert_string_equal(out[i].value, vals[i]);
  }
  nv[0] = 'X';
  assert_string_equal(out[1].value, "node");
  /* only one side */
  assert_int_equal(etcdreg__labels_merge(&a, NULL, 0, common, 2, &out, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(out[0].key, "a");
  assert_string_equal(out[0].value, "ca");
  assert_string_equal(out[1].key, "c");
  assert_int_equal(etcdreg__labels_merge(&a, node, 1, NULL, 0, &out, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(out[0].value, "Xode");
  assert_int_equal(etcdreg__labels_merge(&a, NULL, 0, NULL, 0, &out, &n), 0);
  assert_null(out);
  assert_int_equal(n, 0);
  etcdreg_arena_free(&a);
}

/* ---------------------------------------------------------------------------------------- */
/* times                                                                                     */

#define T_GO_NODE INT64_C(1795502853636044890)  /* 2026-11-24T06:47:33.63604489Z */
#define T_GO_GROUP INT64_C(1795502853629110098) /* 2026-11-24T06:47:33.629110098Z */

static void expect_fmt(int64_t ns, const char *want) {
  char buf[ETCDREG__TIME_BUF];
  memset(buf, 'Q', sizeof(buf));
  size_t len = etcdreg__time_format(ns, buf);
  assert_string_equal(buf, want);
  assert_int_equal(len, strlen(want));
}

static void test_time_format(void **state) {
  (void)state;
  expect_fmt(T_GO_NODE, "2026-11-24T06:47:33.63604489Z");
  expect_fmt(T_GO_GROUP, "2026-11-24T06:47:33.629110098Z");
  expect_fmt(0, "1970-01-01T00:00:00Z");
  expect_fmt(1, "1970-01-01T00:00:00.000000001Z");
  expect_fmt(-1, "1969-12-31T23:59:59.999999999Z");
  expect_fmt(INT64_C(1709208000) * 1000000000, "2024-02-29T12:00:00Z");
  expect_fmt(INT64_C(1709208000) * 1000000000 + 500000000, "2024-02-29T12:00:00.5Z");
  expect_fmt(INT64_C(946684800) * 1000000000 + 120000000, "2000-01-01T00:00:00.12Z");
  expect_fmt(INT64_C(946684799) * 1000000000, "1999-12-31T23:59:59Z");
  expect_fmt(INT64_MAX, "2262-04-11T23:47:16.854775807Z");
  expect_fmt(INT64_MIN, "1677-09-21T00:12:43.145224192Z");
}

static void expect_parse(const char *s, int64_t want) {
  int64_t got = 12345;
  int rv = etcdreg__time_parse(s, &got);
  if (rv) fail_msg("\"%s\" rejected", s);
  if (got != want) fail_msg("\"%s\": got %lld, want %lld", s, (long long)got, (long long)want);
}

static void expect_parse_fail(const char *s) {
  int64_t got = 777;
  if (etcdreg__time_parse(s, &got) != ETCDREG_EDECODE) fail_msg("\"%s\" accepted (%lld)", s, (long long)got);
}

static void test_time_parse(void **state) {
  (void)state;
  const int64_t base = INT64_C(1795502853) * 1000000000; /* 2026-11-24T06:47:33Z */
  expect_parse("2026-11-24T06:47:33.63604489Z", T_GO_NODE);
  expect_parse("2026-11-24T06:47:33.629110098Z", T_GO_GROUP);
  /* Go's local-zone form */
  expect_parse("2026-11-24T07:47:33.63604489+01:00", T_GO_NODE);
  expect_parse("2026-11-24T01:17:33.63604489-05:30", T_GO_NODE);
  expect_parse("2026-11-23T20:47:33.63604489-10:00", T_GO_NODE);
  expect_parse("2026-11-25T06:46:33.63604489+23:59", T_GO_NODE);
  expect_parse("2026-11-23T06:48:33.63604489-23:59", T_GO_NODE);
  expect_parse("2026-11-24T07:47:33.5+01:00", base + 500000000);
  expect_parse("2026-11-24T06:47:33+00:00", base);
  expect_parse("2026-11-24T06:47:33-00:00", base);
  /* 0..9 fraction digits, more digits ignored */
  static const int64_t frac[] = {0,        100000000, 120000000, 123000000, 123400000,
                                 123450000, 123456000, 123456700, 123456780, 123456789};
  const char *digits = "123456789";
  for (int d = 0; d <= 9; d++) {
    char s[64];
    if (d == 0)
      snprintf(s, sizeof(s), "2026-11-24T06:47:33Z");
    else
      snprintf(s, sizeof(s), "2026-11-24T06:47:33.%.*sZ", d, digits);
    expect_parse(s, base + frac[d]);
  }
  expect_parse("2026-11-24T06:47:33.1234567891234Z", base + 123456789);
  expect_parse("2026-11-24T06:47:33.000000000Z", base);
  expect_parse("2026-11-24T06:47:33.0000000009Z", base);
  expect_parse("2024-02-29T12:00:00Z", INT64_C(1709208000) * 1000000000);
  expect_parse("2000-02-29T00:00:00Z", INT64_C(951782400) * 1000000000);
  expect_parse("1970-01-01T00:00:00Z", 0);
  expect_parse("1969-12-31T23:59:59.999999999Z", -1);
  /* Go's zero time (any offset) is 0 */
  expect_parse("0001-01-01T00:00:00Z", 0);
  expect_parse("0001-01-01T01:30:00+01:30", 0);
  /* int64 bounds */
  expect_parse("2262-04-11T23:47:16.854775807Z", INT64_MAX);
  expect_parse("1677-09-21T00:12:43.145224192Z", INT64_MIN);
  expect_parse("1677-09-21T01:12:43.145224192+01:00", INT64_MIN);
  expect_parse_fail("2262-04-11T23:47:16.854775808Z");
  expect_parse_fail("1677-09-21T00:12:43.145224191Z");
  expect_parse_fail("0001-01-01T00:00:00.000000001Z");
  expect_parse_fail("9999-12-31T23:59:59Z");
  expect_parse_fail("0000-01-01T00:00:00Z");
  /* malformed */
  const char *bad[] = {
      "",
      "2026-11-24",
      "2026-11-24T06:47:33",
      "2026-11-24T06:47:33z",
      "2026-11-24t06:47:33Z",
      "2026-11-24 06:47:33Z",
      "2026-11-24T06:47:33.Z",
      "2026-11-24T06:47:33,5Z",
      "2026-11-24T06:47:33.5",
      "2026-11-24T6:47:33Z",
      "2026-11-24T24:00:00Z",
      "2026-11-24T06:60:00Z",
      "2026-11-24T06:47:60Z",
      "2026-13-24T06:47:33Z",
      "2026-00-24T06:47:33Z",
      "2026-11-31T06:47:33Z",
      "2026-02-29T06:47:33Z",
      "1900-02-29T06:47:33Z",
      "2026-11-00T06:47:33Z",
      "2026-11-24T06:47:33+1:00",
      "2026-11-24T06:47:33+01:0",
      "2026-11-24T06:47:33+0100",
      "2026-11-24T06:47:33+24:00",
      "2026-11-24T06:47:33+01:60",
      "2026-11-24T06:47:33ZZ",
      "2026-11-24T06:47:33Z ",
      " 2026-11-24T06:47:33Z",
      "+026-11-24T06:47:33Z",
      "2026-11-24T06:47:33.5x+01:00",
      "2026/11/24T06:47:33Z",
      "20261124T064733Z",
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) expect_parse_fail(bad[i]);
  int64_t x;
  assert_int_equal(etcdreg__time_parse(NULL, &x), ETCDREG_EDECODE);
}

static void test_time_round_trip(void **state) {
  (void)state;
  uint64_t r = 0x9E3779B97F4A7C15u;
  for (int i = 0; i < 20000; i++) {
    r ^= r << 13;
    r ^= r >> 7;
    r ^= r << 17;
    int64_t ns = (int64_t)r;
    if (i % 4 == 1) ns -= ns % 1000000000; /* whole seconds */
    if (i % 4 == 2) ns -= ns % 1000;       /* microseconds */
    if (ns == 0) continue;
    char buf[ETCDREG__TIME_BUF];
    etcdreg__time_format(ns, buf);
    int64_t back = 0;
    if (etcdreg__time_parse(buf, &back) || back != ns) fail_msg("%lld -> %s -> %lld", (long long)ns, buf, (long long)back);
  }
}

/* ---------------------------------------------------------------------------------------- */
/* JSON                                                                                      */

#define GO_NODE                                                                                                 \
  "{\"id\":\"n1\",\"exporter_type\":\"node_exporter\",\"port\":9100,\"metrics_path\":\"/metrics\",\"labels\":{" \
  "\"env\":\"dev\",\"region\":\"us\",\"x\":\"\\u003c\\u0026\\u003e\"},\"status\":\"healthy\",\"last_seen\":"     \
  "\"2026-11-24T06:47:33.63604489Z\"}"
#define GO_GROUP_NEW                                                                                            \
  "{\"name\":\"g1\",\"spec\":{\"username\":\"\",\"password\":\"\"},\"created\":\"2026-11-24T06:47:33.629110098Z\"}"
#define GO_GROUP_CONF                                                                                           \
  "{\"name\":\"g1\",\"spec\":{\"username\":\"gu\",\"password\":\"gp\",\"common_labels\":{\"env\":\"prod\","      \
  "\"region\":\"us\"}},\"created\":\"2026-11-24T06:47:33.629110098Z\"}"

static void expect_node_json(const etcdreg_node_t *n, const char *want) {
  char *s = etcdreg__node_encode(n);
  assert_non_null(s);
  if (strcmp(s, want) != 0) fail_msg("encode:\n got %s\nwant %s", s, want);
  free(s);
}

/* decode(json) then encode must give back exactly `json` */
static void expect_node_round_trip(const char *json) {
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_node_t n;
  char err[200];
  int rv = etcdreg__node_decode(&a, json, strlen(json), &n, err, sizeof(err));
  if (rv) fail_msg("decode %s: %s", json, err);
  expect_node_json(&n, json);
  etcdreg_arena_free(&a);
}

static void test_node_encode_go_bytes(void **state) {
  (void)state;
  etcdreg_label_t labels[] = {{"x", "<&>"}, {"region", "us"}, {"env", "dev"}};
  etcdreg_node_t n = {.id = "n1",
                      .exporter_type = "node_exporter",
                      .port = 9100,
                      .metrics_path = "/metrics",
                      .labels = labels,
                      .label_count = 3,
                      .status = "healthy",
                      .last_seen_ns = T_GO_NODE};
  expect_node_json(&n, GO_NODE);
  expect_node_round_trip(GO_NODE);

  /* no labels -> {}, NULL strings -> "", zero time */
  etcdreg_node_t z = {0};
  expect_node_json(&z, "{\"id\":\"\",\"exporter_type\":\"\",\"port\":0,\"metrics_path\":\"\",\"labels\":{},\"status\":"
                       "\"\",\"last_seen\":\"0001-01-01T00:00:00Z\"}");
  expect_node_round_trip("{\"id\":\"\",\"exporter_type\":\"\",\"port\":0,\"metrics_path\":\"\",\"labels\":{},"
                         "\"status\":\"\",\"last_seen\":\"0001-01-01T00:00:00Z\"}");
  /* negative port and whole-second time */
  z.port = -7;
  z.last_seen_ns = INT64_C(946684800) * 1000000000;
  expect_node_json(&z, "{\"id\":\"\",\"exporter_type\":\"\",\"port\":-7,\"metrics_path\":\"\",\"labels\":{},\"status\":"
                       "\"\",\"last_seen\":\"2000-01-01T00:00:00Z\"}");
  /* duplicate keys: one entry, the first wins; keys sorted bytewise */
  etcdreg_label_t dup[] = {{"b", "1"}, {"a", "x"}, {"b", "2"}, {"B", "y"}, {"\xc3\xa9", "e"}, {"_", "u"}};
  etcdreg_node_t d = good_node();
  d.labels = dup;
  d.label_count = ARRAY_LEN(dup);
  d.status = "healthy";
  d.last_seen_ns = 1;
  expect_node_json(&d, "{\"id\":\"n1\",\"exporter_type\":\"node_exporter\",\"port\":9100,\"metrics_path\":\"/metrics\","
                       "\"labels\":{\"B\":\"y\",\"_\":\"u\",\"a\":\"x\",\"b\":\"1\",\"\xc3\xa9\":\"e\"},\"status\":"
                       "\"healthy\",\"last_seen\":\"1970-01-01T00:00:00.000000001Z\"}");
}

/* Go's string escaping, through every string position (id, label key, label value). */
static void test_json_escaping(void **state) {
  (void)state;
  /* Input pieces and what Go writes for them. */
  const char *in = "a\x01\b\f\n\r\t\x1f\"\\/<>&\x7f"
                   "\xc3\xa9"          /* e-acute: raw */
                   "\xf0\x9f\x98\x80"  /* U+1F600: raw */
                   "\xe2\x80\xa8"      /* U+2028 */
                   "\xe2\x80\xa9"      /* U+2029 */
                   "\xef\xbf\xbd"      /* a real U+FFFD: raw */
                   "\xff"              /* invalid byte */
                   "\xe2\x82"          /* truncated sequence: one \ufffd per byte */
                   "|\xc0\xaf"         /* overlong */
                   "|\xed\xa0\x80"     /* surrogate */
                   "|\xf4\x90\x80\x80" /* above U+10FFFF */
                   "|\x80"             /* lone continuation */
                   "|\xe2\x80";        /* truncated at the end */
  const char *out = "\"a\\u0001\\b\\f\\n\\r\\t\\u001f\\\"\\\\/\\u003c\\u003e\\u0026\x7f"
                    "\xc3\xa9"
                    "\xf0\x9f\x98\x80"
                    "\\u2028\\u2029"
                    "\xef\xbf\xbd"
                    "\\ufffd"
                    "\\ufffd\\ufffd"
                    "|\\ufffd\\ufffd"
                    "|\\ufffd\\ufffd\\ufffd"
                    "|\\ufffd\\ufffd\\ufffd\\ufffd"
                    "|\\ufffd"
                    "|\\ufffd\\ufffd\"";
  etcdreg_label_t l[] = {{in, in}};
  etcdreg_node_t n = {.id = in, .exporter_type = "\x0b\x00", .labels = l, .label_count = 1, .status = "\x1b[0m"};
  char want[1024];
  snprintf(want, sizeof(want),
           "{\"id\":%s,\"exporter_type\":\"\\u000b\",\"port\":0,\"metrics_path\":\"\",\"labels\":{%s:%s},"
           "\"status\":\"\\u001b[0m\",\"last_seen\":\"0001-01-01T00:00:00Z\"}",
           out, out, out);
  expect_node_json(&n, want);

  /* every control character */
  char ctl[32];
  for (int c = 1; c < 32; c++) ctl[c - 1] = (char)c;
  ctl[31] = 0;
  etcdreg_node_t c = {.id = ctl};
  char *s = etcdreg__node_encode(&c);
  assert_non_null(s);
  const char *want_ctl = "{\"id\":\"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e"
                         "\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b"
                         "\\u001c\\u001d\\u001e\\u001f\",";
  if (strncmp(s, want_ctl, strlen(want_ctl)) != 0) fail_msg("got %s", s);
  free(s);

  /* valid UTF-8 strings survive encode -> decode -> encode */
  const char *valid = "a\x01\b\f\n\r\t\x1f\"\\/<>&\x7f\xc3\xa9\xf0\x9f\x98\x80\xe2\x80\xa8\xe2\x80\xa9\xef\xbf\xbd";
  etcdreg_label_t vl[] = {{valid, valid}, {"k", "v"}};
  etcdreg_node_t v = {.id = valid, .exporter_type = "e", .port = 1, .metrics_path = valid, .labels = vl,
                      .label_count = 2, .status = valid, .last_seen_ns = T_GO_NODE};
  char *js = etcdreg__node_encode(&v);
  assert_non_null(js);
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_node_t back;
  char err[200];
  assert_int_equal(etcdreg__node_decode(&a, js, strlen(js), &back, err, sizeof(err)), 0);
  assert_string_equal(back.id, valid);
  assert_string_equal(back.metrics_path, valid);
  assert_string_equal(back.status, valid);
  assert_int_equal(back.label_count, 2);
  assert_string_equal(back.labels[0].key, valid); /* 'a' < 'k' */
  assert_string_equal(back.labels[0].value, valid);
  assert_int_equal(back.last_seen_ns, T_GO_NODE);
  expect_node_round_trip(js);
  etcdreg_arena_free(&a);
  free(js);
}

static void expect_group_json(const char *name, const etcdreg_group_spec_t *spec, int64_t created, const char *want) {
  char *s = etcdreg__group_encode(name, spec, created);
  assert_non_null(s);
  if (strcmp(s, want) != 0) fail_msg("encode:\n got %s\nwant %s", s, want);
  free(s);
}

static void expect_group_round_trip(const char *json) {
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_group_t g;
  char err[200];
  int rv = etcdreg__group_decode(&a, json, strlen(json), &g, err, sizeof(err));
  if (rv) fail_msg("decode %s: %s", json, err);
  expect_group_json(g.name, &g.spec, g.created_ns, json);
  etcdreg_arena_free(&a);
}

static void test_group_encode_go_bytes(void **state) {
  (void)state;
  etcdreg_group_spec_t empty = {"", "", NULL, 0};
  expect_group_json("g1", &empty, T_GO_GROUP, GO_GROUP_NEW);
  expect_group_json("g1", NULL, T_GO_GROUP, GO_GROUP_NEW);
  etcdreg_group_spec_t nulls = {NULL, NULL, NULL, 5}; /* count without array: omitted */
  expect_group_json("g1", &nulls, T_GO_GROUP, GO_GROUP_NEW);
  etcdreg_label_t cl[] = {{"region", "us"}, {"env", "prod"}};
  etcdreg_group_spec_t conf = {"gu", "gp", cl, 2};
  expect_group_json("g1", &conf, T_GO_GROUP, GO_GROUP_CONF);
  expect_group_round_trip(GO_GROUP_NEW);
  expect_group_round_trip(GO_GROUP_CONF);
  /* zero created, escaping in credentials */
  etcdreg_group_spec_t esc = {"<u>", "p\"&\\", NULL, 0};
  expect_group_json(NULL, &esc, 0,
                    "{\"name\":\"\",\"spec\":{\"username\":\"\\u003cu\\u003e\",\"password\":\"p\\\"\\u0026\\\\\"},"
                    "\"created\":\"0001-01-01T00:00:00Z\"}");
}

static void test_node_decode_fields(void **state) {
  (void)state;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_node_t n;
  char err[200] = "x";
  assert_int_equal(etcdreg__node_decode(&a, GO_NODE, strlen(GO_NODE), &n, err, sizeof(err)), 0);
  assert_string_equal(err, "");
  assert_string_equal(n.id, "n1");
  assert_string_equal(n.exporter_type, "node_exporter");
  assert_int_equal(n.port, 9100);
  assert_string_equal(n.metrics_path, "/metrics");
  assert_int_equal(n.label_count, 3);
  assert_string_equal(n.labels[0].key, "env");
  assert_string_equal(n.labels[0].value, "dev");
  assert_string_equal(n.labels[1].key, "region");
  assert_string_equal(n.labels[2].key, "x");
  assert_string_equal(n.labels[2].value, "<&>");
  assert_string_equal(n.status, "healthy");
  assert_int_equal(n.last_seen_ns, T_GO_NODE);

  /* Go-style local offset, case variants of field names, unknown fields, unsorted labels */
  const char *go_local =
      "{\"ID\":\"n1\",\"Exporter_Type\":\"node_exporter\",\"PORT\":9100,\"Metrics_Path\":\"/metrics\","
      "\"extra\":{\"deep\":[1,2.5,{\"x\":null}],\"big\":1e300},\"Labels\":{\"x\":\"<&>\",\"region\":\"us\",\"env\":\"dev\"},"
      "\"\xc5\xbftatus\":\"healthy\",\"LAST_SEEN\":\"2026-11-24T07:47:33.63604489+01:00\",\"more\":true}";
  assert_int_equal(etcdreg__node_decode(&a, go_local, strlen(go_local), &n, err, sizeof(err)), 0);
  expect_node_json(&n, GO_NODE);
  const char *neg = "{\"id\":\"n1\",\"exporter_type\":\"node_exporter\",\"port\":9100,\"metrics_path\":\"/metrics\","
                    "\"labels\":{\"env\":\"dev\",\"region\":\"us\",\"x\":\"\\u003c\\u0026\\u003e\"},\"status\":"
                    "\"healthy\",\"last_seen\":\"2026-11-23T21:17:33.63604489-09:30\"}";
  assert_int_equal(etcdreg__node_decode(&a, neg, strlen(neg), &n, err, sizeof(err)), 0);
  expect_node_json(&n, GO_NODE);

  /* missing fields and nulls: zero values, strings never NULL */
  const char *empties[] = {"{}", " { } ",
                           ("{\"id\":null,\"exporter_type\":null,\"port\":null,\"metrics_path\":null,\"labels\":null,"
                            "\"status\":null,\"last_seen\":null}")};
  for (size_t i = 0; i < ARRAY_LEN(empties); i++) {
    assert_int_equal(etcdreg__node_decode(&a, empties[i], strlen(empties[i]), &n, err, sizeof(err)), 0);
    assert_string_equal(n.id, "");
    assert_string_equal(n.exporter_type, "");
    assert_int_equal(n.port, 0);
    assert_string_equal(n.metrics_path, "");
    assert_null(n.labels);
    assert_int_equal(n.label_count, 0);
    assert_string_equal(n.status, "");
    assert_int_equal(n.last_seen_ns, 0);
  }
  /* zero time and labels {} */
  const char *zt = "{\"labels\":{},\"last_seen\":\"0001-01-01T00:00:00Z\"}";
  assert_int_equal(etcdreg__node_decode(&a, zt, strlen(zt), &n, err, sizeof(err)), 0);
  assert_int_equal(n.last_seen_ns, 0);
  assert_int_equal(n.label_count, 0);

  /* Go applies repeated fields in order: last wins, maps accumulate, null resets */
  const char *rep = "{\"id\":\"a\",\"ID\":\"b\",\"labels\":{\"a\":\"1\",\"c\":\"5\"},\"Labels\":{\"b\":\"2\",\"a\":\"3\"},"
                    "\"port\":1,\"Port\":2}";
  assert_int_equal(etcdreg__node_decode(&a, rep, strlen(rep), &n, err, sizeof(err)), 0);
  assert_string_equal(n.id, "b");
  assert_int_equal(n.port, 2);
  assert_int_equal(n.label_count, 3);
  assert_string_equal(n.labels[0].key, "a");
  assert_string_equal(n.labels[0].value, "3");
  assert_string_equal(n.labels[1].key, "b");
  assert_string_equal(n.labels[2].key, "c");
  const char *reset = "{\"labels\":{\"a\":\"1\"},\"LABELS\":null,\"id\":\"x\",\"Id\":null}";
  assert_int_equal(etcdreg__node_decode(&a, reset, strlen(reset), &n, err, sizeof(err)), 0);
  assert_int_equal(n.label_count, 0);
  assert_null(n.labels);
  assert_string_equal(n.id, "x"); /* null leaves a string as it is */
  /* a null label value is stored as "" (Go) */
  const char *nullv = "{\"labels\":{\"k\":null,\"j\":\"v\"}}";
  assert_int_equal(etcdreg__node_decode(&a, nullv, strlen(nullv), &n, err, sizeof(err)), 0);
  assert_int_equal(n.label_count, 2);
  assert_string_equal(n.labels[0].key, "j");
  assert_string_equal(n.labels[1].key, "k");
  assert_string_equal(n.labels[1].value, "");
  /* near-miss names are unknown fields, not matches */
  const char *near = "{\"i d\":\"x\",\"idd\":\"y\",\"exportertype\":\"z\",\"exporter-type\":\"w\",\"last_seen_\":5}";
  assert_int_equal(etcdreg__node_decode(&a, near, strlen(near), &n, err, sizeof(err)), 0);
  assert_string_equal(n.id, "");
  assert_string_equal(n.exporter_type, "");
  /* U+0000 is fine in an unknown field */
  const char *nul_unknown = "{\"zz\":\"a\\u0000b\",\"id\":\"n\"}";
  assert_int_equal(etcdreg__node_decode(&a, nul_unknown, strlen(nul_unknown), &n, err, sizeof(err)), 0);
  assert_string_equal(n.id, "n");
  /* the length is honoured: the buffer need not be NUL-terminated */
  char buf[64];
  memcpy(buf, "{\"id\":\"abc\"}XXXX", 16);
  assert_int_equal(etcdreg__node_decode(&a, buf, 12, &n, err, sizeof(err)), 0);
  assert_string_equal(n.id, "abc");
  /* Go port range: int64 fits, C int limits */
  const char *bigport = "{\"port\":2147483647}";
  assert_int_equal(etcdreg__node_decode(&a, bigport, strlen(bigport), &n, err, sizeof(err)), 0);
  assert_int_equal(n.port, 2147483647);
  const char *negport = "{\"port\":-0}";
  assert_int_equal(etcdreg__node_decode(&a, negport, strlen(negport), &n, err, sizeof(err)), 0);
  assert_int_equal(n.port, 0);
  assert_int_equal(a.failed, 0);
  etcdreg_arena_free(&a);
}

static void expect_node_decode_fail(const char *json, const char *msg_part) {
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_node_t n;
  memset(&n, 0x5a, sizeof(n));
  char err[256] = "";
  int rv = etcdreg__node_decode(&a, json, strlen(json), &n, err, sizeof(err));
  if (rv != ETCDREG_EDECODE) fail_msg("%s: rv %d", json, rv);
  if (!err[0]) fail_msg("%s: no message", json);
  if (msg_part && !strstr(err, msg_part)) fail_msg("%s: message \"%s\" lacks \"%s\"", json, err, msg_part);
  etcdreg_arena_free(&a);
}

static void test_node_decode_errors(void **state) {
  (void)state;
  expect_node_decode_fail("{\"port\":\"9\"}", "cannot unmarshal string into Go struct field Node.port of type int");
  expect_node_decode_fail("{\"port\":9.5}", "cannot unmarshal number 9.5 into Go struct field Node.port of type int");
  expect_node_decode_fail("{\"port\":9.0}", "Node.port of type int");
  expect_node_decode_fail("{\"port\":1e2}", "Node.port of type int");
  expect_node_decode_fail("{\"port\":true}", "cannot unmarshal bool");
  expect_node_decode_fail("{\"port\":2147483648}", "out of range");
  expect_node_decode_fail("{\"port\":-2147483649}", "out of range");
  expect_node_decode_fail("{\"id\":5}", "cannot unmarshal number into Go struct field Node.id of type string");
  expect_node_decode_fail("{\"ID\":[]}", "cannot unmarshal array into Go struct field Node.id of type string");
  expect_node_decode_fail("{\"status\":{}}", "Node.status of type string");
  expect_node_decode_fail("{\"exporter_type\":false}", "Node.exporter_type");
  expect_node_decode_fail("{\"metrics_path\":1}", "Node.metrics_path");
  expect_node_decode_fail("{\"labels\":[]}", "cannot unmarshal array into Go struct field Node.labels of type map[string]string");
  expect_node_decode_fail("{\"labels\":\"x\"}", "Node.labels of type map[string]string");
  expect_node_decode_fail("{\"labels\":{\"a\":5}}", "cannot unmarshal number into Go struct field Node.labels of type string");
  expect_node_decode_fail("{\"labels\":{\"a\":{}}}", "Node.labels of type string");
  expect_node_decode_fail("{\"last_seen\":5}", "Time.UnmarshalJSON: input is not a JSON string");
  expect_node_decode_fail("{\"last_seen\":\"\"}", "parsing time");
  expect_node_decode_fail("{\"last_seen\":\"yesterday\"}", "parsing time \"yesterday\"");
  expect_node_decode_fail("{\"last_seen\":\"2026-11-24T06:47:33\"}", "parsing time");
  expect_node_decode_fail("{\"last_seen\":\"2026-11-24 06:47:33Z\"}", "parsing time");
  expect_node_decode_fail("{\"id\":\"a\\u0000b\"}", "U+0000");
  /* jansson rejects U+0000 in any object key, even with JSON_ALLOW_NUL (Go accepts it) */
  expect_node_decode_fail("{\"labels\":{\"a\\u0000\":\"v\"}}", "invalid JSON");
  expect_node_decode_fail("{\"labels\":{\"a\":\"v\\u0000\"}}", "U+0000");
  /* not JSON, not an object */
  expect_node_decode_fail("", "invalid JSON");
  expect_node_decode_fail("{", "invalid JSON");
  expect_node_decode_fail("{\"id\":\"n1\"", "invalid JSON");
  expect_node_decode_fail("{} x", "invalid JSON");
  expect_node_decode_fail("nul", "invalid JSON");
  expect_node_decode_fail("null", NULL);
  expect_node_decode_fail("\"str\"", NULL);
  expect_node_decode_fail("42", NULL);
  expect_node_decode_fail("[1,2]", "cannot unmarshal array into Go value of type types.Node");
  expect_node_decode_fail("{\"id\":\"\xff\"}", "invalid JSON"); /* jansson rejects invalid UTF-8 */
  /* a buffer cut short */
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_node_t n;
  char err[128];
  assert_int_equal(etcdreg__node_decode(&a, GO_NODE, 20, &n, err, sizeof(err)), ETCDREG_EDECODE);
  assert_int_equal(etcdreg__node_decode(&a, NULL, 0, &n, err, sizeof(err)), ETCDREG_EDECODE);
  assert_int_equal(etcdreg__node_decode(&a, "{\"port\":\"9\"}", 12, &n, NULL, 0), ETCDREG_EDECODE);
  etcdreg_arena_free(&a);
}

static void test_group_decode(void **state) {
  (void)state;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_group_t g;
  char err[200] = "x";
  assert_int_equal(etcdreg__group_decode(&a, GO_GROUP_CONF, strlen(GO_GROUP_CONF), &g, err, sizeof(err)), 0);
  assert_string_equal(err, "");
  assert_string_equal(g.name, "g1");
  assert_string_equal(g.spec.username, "gu");
  assert_string_equal(g.spec.password, "gp");
  assert_int_equal(g.spec.common_label_count, 2);
  assert_string_equal(g.spec.common_labels[0].key, "env");
  assert_string_equal(g.spec.common_labels[0].value, "prod");
  assert_string_equal(g.spec.common_labels[1].key, "region");
  assert_string_equal(g.spec.common_labels[1].value, "us");
  assert_int_equal(g.created_ns, T_GO_GROUP);
  assert_int_equal(g.mod_revision, 0);

  assert_int_equal(etcdreg__group_decode(&a, GO_GROUP_NEW, strlen(GO_GROUP_NEW), &g, err, sizeof(err)), 0);
  assert_null(g.spec.common_labels);
  assert_int_equal(g.spec.common_label_count, 0);
  assert_string_equal(g.spec.username, "");

  /* Go's local-offset time and case variants, unknown fields */
  const char *local = "{\"NAME\":\"g1\",\"Spec\":{\"UserName\":\"gu\",\"PASSWORD\":\"gp\",\"Common_Labels\":{\"region\":"
                      "\"us\",\"env\":\"prod\"},\"other\":1},\"CREATED\":\"2026-11-24T08:47:33.629110098+02:00\","
                      "\"revision\":7}";
  assert_int_equal(etcdreg__group_decode(&a, local, strlen(local), &g, err, sizeof(err)), 0);
  expect_group_json(g.name, &g.spec, g.created_ns, GO_GROUP_CONF);
  /* missing and null */
  const char *missing[] = {"{}", "{\"name\":null,\"spec\":null,\"created\":null}",
                           "{\"spec\":{\"username\":null,\"password\":null,\"common_labels\":null}}"};
  for (size_t i = 0; i < ARRAY_LEN(missing); i++) {
    assert_int_equal(etcdreg__group_decode(&a, missing[i], strlen(missing[i]), &g, err, sizeof(err)), 0);
    assert_string_equal(g.name, "");
    assert_string_equal(g.spec.username, "");
    assert_string_equal(g.spec.password, "");
    assert_null(g.spec.common_labels);
    assert_int_equal(g.created_ns, 0);
  }
  /* repeated spec objects merge into the same struct (Go) */
  const char *rep = "{\"spec\":{\"username\":\"u\",\"common_labels\":{\"a\":\"1\"}},\"SPEC\":{\"password\":\"p\","
                    "\"common_labels\":{\"b\":\"2\"}}}";
  assert_int_equal(etcdreg__group_decode(&a, rep, strlen(rep), &g, err, sizeof(err)), 0);
  assert_string_equal(g.spec.username, "u");
  assert_string_equal(g.spec.password, "p");
  assert_int_equal(g.spec.common_label_count, 2);
  etcdreg_arena_free(&a);

  static const struct {
    const char *json, *msg;
  } bad[] = {
      {"{\"name\":true}", "cannot unmarshal bool into Go struct field ServiceGroupData.name of type string"},
      {"{\"spec\":\"x\"}", "cannot unmarshal string into Go struct field ServiceGroupData.spec of type types.ServiceGroupSpec"},
      {"{\"spec\":[]}", "ServiceGroupData.spec of type"},
      {"{\"spec\":{\"username\":1}}", "ServiceGroupData.spec.username of type string"},
      {"{\"spec\":{\"Password\":{}}}", "ServiceGroupData.spec.password of type string"},
      {"{\"spec\":{\"common_labels\":[1]}}", "ServiceGroupData.spec.common_labels of type map[string]string"},
      {"{\"spec\":{\"common_labels\":{\"a\":1}}}", "ServiceGroupData.spec.common_labels of type string"},
      {"{\"created\":1}", "Time.UnmarshalJSON: input is not a JSON string"},
      {"{\"created\":\"2026-11-24\"}", "parsing time"},
      {"[]", "cannot unmarshal array into Go value of type types.ServiceGroupData"},
      {"not json", "invalid JSON"},
      {"", "invalid JSON"},
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    etcdreg_arena_init(&a);
    char e[256] = "";
    int rv = etcdreg__group_decode(&a, bad[i].json, strlen(bad[i].json), &g, e, sizeof(e));
    if (rv != ETCDREG_EDECODE) fail_msg("%s: rv %d", bad[i].json, rv);
    if (!strstr(e, bad[i].msg)) fail_msg("%s: message \"%s\" lacks \"%s\"", bad[i].json, e, bad[i].msg);
    etcdreg_arena_free(&a);
  }
}

/* Many labels: sorting, merge and JSON at scale. */
static void test_many_labels(void **state) {
  (void)state;
  enum { N = 500 };
  etcdreg_label_t *l = calloc(N, sizeof(*l));
  char(*keys)[16] = calloc(N, 16);
  assert_non_null(l);
  assert_non_null(keys);
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], 16, "k%05d", (i * 7919) % N);
    l[i].key = keys[i];
    l[i].value = keys[i];
  }
  etcdreg_node_t n = good_node();
  n.labels = l;
  n.label_count = N;
  n.status = "healthy";
  n.last_seen_ns = T_GO_NODE;
  assert_int_equal(etcdreg__validate_node(&n, 1000, NULL, 0), 0);
  char *js = etcdreg__node_encode(&n);
  assert_non_null(js);
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_node_t back;
  assert_int_equal(etcdreg__node_decode(&a, js, strlen(js), &back, NULL, 0), 0);
  assert_int_equal(back.label_count, N);
  for (int i = 1; i < N; i++) assert_true(strcmp(back.labels[i - 1].key, back.labels[i].key) < 0);
  expect_node_round_trip(js);
  free(js);
  etcdreg_arena_free(&a);
  free(keys);
  free(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_base_clean_table),
      cmocka_unit_test(test_keys),
      cmocka_unit_test(test_validate_group_name),
      cmocka_unit_test(test_validate_node),
      cmocka_unit_test(test_validate_common_labels),
      cmocka_unit_test(test_labels_sort_copy),
      cmocka_unit_test(test_labels_merge),
      cmocka_unit_test(test_time_format),
      cmocka_unit_test(test_time_parse),
      cmocka_unit_test(test_time_round_trip),
      cmocka_unit_test(test_node_encode_go_bytes),
      cmocka_unit_test(test_json_escaping),
      cmocka_unit_test(test_group_encode_go_bytes),
      cmocka_unit_test(test_node_decode_fields),
      cmocka_unit_test(test_node_decode_errors),
      cmocka_unit_test(test_group_decode),
      cmocka_unit_test(test_many_labels),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
