/* Unit tests for the bump allocator (src/common/arena.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/arena.h"

static int aligned(const void *p) { return ((uintptr_t)p % _Alignof(max_align_t)) == 0; }

static int all_zero(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return 0;
  return 1;
}

static void test_many_small_zeroed_aligned(void **state) {
  (void)state;
  enum { N = 5000 };
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  uint8_t **ptrs = malloc(N * sizeof(*ptrs));
  size_t *lens = malloc(N * sizeof(*lens));
  assert_non_null(ptrs);
  assert_non_null(lens);
  for (size_t i = 0; i < N; i++) {
    size_t n = (i * 7919) % 300; /* 0..299 bytes, includes 0 */
    uint8_t *p = etcdreg_arena_alloc(&a, n);
    assert_non_null(p);
    assert_true(aligned(p));
    assert_true(all_zero(p, n));
    /* Scribble over the whole block: ASan flags writes past what the arena owns, and
     * overlapping blocks are caught by the check below. */
    memset(p, (int)(i & 0xff) | 1, n);
    ptrs[i] = p;
    lens[i] = n;
  }
  for (size_t i = 0; i < N; i++)
    for (size_t k = 0; k < lens[i]; k++)
      if (ptrs[i][k] != (uint8_t)((i & 0xff) | 1)) fail_msg("block %zu byte %zu overwritten", i, k);
  assert_int_equal(a.failed, 0);
  free(ptrs);
  free(lens);
  etcdreg_arena_free(&a);
  assert_null(a.chunks);
}

static void test_distinct_blocks_for_zero_size(void **state) {
  (void)state;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  void *p = etcdreg_arena_alloc(&a, 0);
  void *q = etcdreg_arena_alloc(&a, 0);
  assert_non_null(p);
  assert_non_null(q);
  assert_ptr_not_equal(p, q);
  etcdreg_arena_free(&a);
}

static void test_large_allocation(void **state) {
  (void)state;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  uint8_t *small = etcdreg_arena_alloc(&a, 16);
  assert_non_null(small);
  memset(small, 0x11, 16);
  static const size_t sizes[] = {4097, 10000, 1u << 20};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    uint8_t *big = etcdreg_arena_alloc(&a, sizes[i]);
    assert_non_null(big);
    assert_true(aligned(big));
    assert_true(all_zero(big, sizes[i]));
    memset(big, 0x22, sizes[i]); /* the whole block is writable */
    assert_int_equal(big[sizes[i] - 1], 0x22);
  }
  /* Earlier blocks are intact and small allocations go on working. */
  for (size_t k = 0; k < 16; k++) assert_int_equal(small[k], 0x11);
  uint8_t *after = etcdreg_arena_alloc(&a, 8);
  assert_non_null(after);
  assert_true(all_zero(after, 8));
  assert_int_equal(a.failed, 0);
  etcdreg_arena_free(&a);
}

static void test_exact_chunk_boundary(void **state) {
  (void)state;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  for (int round = 0; round < 4; round++) {
    uint8_t *p = etcdreg_arena_alloc(&a, 4096);
    assert_non_null(p);
    memset(p, 0x33, 4096);
    uint8_t *q = etcdreg_arena_alloc(&a, 1);
    assert_non_null(q);
    assert_int_equal(*q, 0);
    *q = 1;
    for (size_t k = 0; k < 4096; k++) assert_int_equal(p[k], 0x33);
  }
  etcdreg_arena_free(&a);
}

static void test_dup(void **state) {
  (void)state;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  char src[] = "hello, arena";
  char *d = etcdreg_arena_dup(&a, src, sizeof(src));
  assert_non_null(d);
  assert_ptr_not_equal(d, src);
  assert_string_equal(d, "hello, arena");
  src[0] = 'J'; /* a copy, not an alias */
  assert_int_equal(d[0], 'h');
  assert_true(aligned(d));
  /* Zero-length dup still returns a usable pointer (NULL source allowed). */
  void *z = etcdreg_arena_dup(&a, NULL, 0);
  assert_non_null(z);
  /* Large dup. */
  size_t n = 20000;
  uint8_t *big = malloc(n);
  assert_non_null(big);
  for (size_t i = 0; i < n; i++) big[i] = (uint8_t)(i * 31);
  uint8_t *bd = etcdreg_arena_dup(&a, big, n);
  assert_non_null(bd);
  assert_memory_equal(bd, big, n);
  free(big);
  etcdreg_arena_free(&a);
}

static void test_new_macro_and_reuse_after_free(void **state) {
  (void)state;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  struct pt {
    long double x;
    int y;
  } *arr = ETCDREG_ARENA_NEW(&a, struct pt, 100);
  assert_non_null(arr);
  assert_true(aligned(arr));
  for (int i = 0; i < 100; i++) {
    assert_true(arr[i].x == 0 && arr[i].y == 0);
    arr[i].x = i;
    arr[i].y = i;
  }
  etcdreg_arena_free(&a);
  /* A freed arena is empty and usable again. */
  assert_null(a.chunks);
  assert_int_equal(a.left, 0);
  assert_int_equal(a.failed, 0);
  int *v = ETCDREG_ARENA_NEW(&a, int, 3);
  assert_non_null(v);
  assert_true(v[0] == 0 && v[1] == 0 && v[2] == 0);
  etcdreg_arena_free(&a);
  etcdreg_arena_free(&a); /* double free of an empty arena is harmless */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_many_small_zeroed_aligned),
      cmocka_unit_test(test_distinct_blocks_for_zero_size),
      cmocka_unit_test(test_large_allocation),
      cmocka_unit_test(test_exact_chunk_boundary),
      cmocka_unit_test(test_dup),
      cmocka_unit_test(test_new_macro_and_reuse_after_free),
  };
  return cmocka_run_group_tests_name("arena", tests, NULL, NULL);
}
