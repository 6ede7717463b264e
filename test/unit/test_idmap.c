/* The id map against a reference array, under random inserts and removals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "common/idmap.h"
#include "etcdreg/error.h"

static void test_idmap_random_against_reference(void **state) {
  (void)state;
  enum { KEYS = 5000, OPS = 200000 };
  static int present[KEYS];
  static int values[KEYS];
  etcdreg_idmap_t m;
  etcdreg_idmap_init(&m);
  srand(12345);
  size_t live = 0;
  for (int op = 0; op < OPS; op++) {
    int k = rand() % KEYS;
    int64_t key = (int64_t)k * 7919 - 100000; /* negative and positive ids */
    if (rand() % 3) {
      if (!present[k]) live++;
      present[k] = 1;
      assert_int_equal(etcdreg_idmap_put(&m, key, &values[k]), 0);
    } else {
      void *v = etcdreg_idmap_remove(&m, key);
      if (present[k]) {
        assert_ptr_equal(v, &values[k]);
        live--;
      } else {
        assert_null(v);
      }
      present[k] = 0;
    }
    if (op % 1000 == 0) {
      for (int i = 0; i < KEYS; i++) {
        void *v = etcdreg_idmap_get(&m, (int64_t)i * 7919 - 100000);
        if (present[i]) assert_ptr_equal(v, &values[i]);
        else assert_null(v);
      }
      assert_int_equal(m.len, live);
    }
  }
  etcdreg_idmap_free(&m);
}

static void test_idmap_basics(void **state) {
  (void)state;
  etcdreg_idmap_t m;
  etcdreg_idmap_init(&m);
  int a, b;
  assert_null(etcdreg_idmap_get(&m, 1));
  assert_null(etcdreg_idmap_remove(&m, 1));
  assert_int_equal(etcdreg_idmap_put(&m, 1, NULL), ETCDREG_EINVAL);
  assert_int_equal(etcdreg_idmap_put(&m, -1, &a), 0);
  assert_int_equal(etcdreg_idmap_put(&m, -1, &b), 0); /* replace */
  assert_ptr_equal(etcdreg_idmap_get(&m, -1), &b);
  assert_int_equal(m.len, 1);
  for (int64_t i = 0; i < 100000; i++) assert_int_equal(etcdreg_idmap_put(&m, i << 20, &a), 0);
  for (int64_t i = 0; i < 100000; i++) assert_ptr_equal(etcdreg_idmap_remove(&m, i << 20), &a);
  assert_ptr_equal(etcdreg_idmap_get(&m, -1), &b);
  assert_int_equal(m.len, 1);
  etcdreg_idmap_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idmap_basics),
      cmocka_unit_test(test_idmap_random_against_reference),
  };
  return cmocka_run_group_tests_name("idmap", tests, NULL, NULL);
}
