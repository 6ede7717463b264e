/* Unit tests for the gRPC length-prefixed message framer (src/grpc/framing.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "etcdreg/error.h"
#include "grpc/framing.h"

/* ---- helpers ---- */

typedef struct {
  const uint8_t *data;
  size_t len;
} span_t;

/* What the callback should see, in order, and what it saw. */
typedef struct {
  const span_t *expect;
  size_t n_expect;
  size_t count;         /* callbacks seen */
  size_t bad;           /* callbacks whose length or bytes did not match */
  const uint8_t *last_ptr;
  size_t last_len;
  const uint8_t *ptrs[64];
  size_t fail_at;       /* 1-based callback number that returns fail_code; 0 = never */
  int fail_code;
} collect_t;

static int collect_cb(void *ctx, const uint8_t *msg, size_t len) {
  collect_t *c = ctx;
  size_t i = c->count++;
  c->last_ptr = msg;
  c->last_len = len;
  if (i < 64) c->ptrs[i] = msg;
  if (i >= c->n_expect) {
    c->bad++;
  } else {
    const span_t *e = &c->expect[i];
    if (e->len != len) c->bad++;
    else if (len && (msg == NULL || memcmp(e->data, msg, len) != 0)) c->bad++;
    else if (msg == NULL) c->bad++;
  }
  if (c->fail_at && c->count == c->fail_at) return c->fail_code;
  return 0;
}

static void collect_init(collect_t *c, const span_t *expect, size_t n) {
  memset(c, 0, sizeof(*c));
  c->expect = expect;
  c->n_expect = n;
}

static uint8_t *make_payload(size_t len, unsigned seed) {
  uint8_t *p = malloc(len ? len : 1);
  assert_non_null(p);
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < len; i++) {
    x = x * 1103515245u + 12345u;
    p[i] = (uint8_t)(x >> 16);
  }
  return p;
}

/* Concatenates prefix+payload for each payload into one exact-size malloc'd buffer. */
static uint8_t *make_stream(const span_t *msgs, size_t n, size_t *total_out) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += ETCDREG_GRPC_PREFIX + msgs[i].len;
  uint8_t *buf = malloc(total ? total : 1);
  assert_non_null(buf);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    etcdreg_grpc_write_prefix(buf + o, msgs[i].len);
    o += ETCDREG_GRPC_PREFIX;
    if (msgs[i].len) memcpy(buf + o, msgs[i].data, msgs[i].len);
    o += msgs[i].len;
  }
  *total_out = total;
  return buf;
}

/* Feeds [p, p+n) from its own exact-size heap copy so ASan catches any over-read. */
static int feed_copy(etcdreg_grpc_framer_t *f, const uint8_t *p, size_t n, collect_t *c) {
  uint8_t *tmp = malloc(n ? n : 1);
  assert_non_null(tmp);
  if (n) memcpy(tmp, p, n);
  int rv = etcdreg_grpc_framer_feed(f, tmp, n, collect_cb, c);
  free(tmp);
  return rv;
}

/* ---- tests ---- */

static void test_single_message_zero_copy(void **state) {
  (void)state;
  uint8_t *payload = make_payload(100, 1);
  span_t m = {payload, 100};
  size_t total;
  uint8_t *buf = make_stream(&m, 1, &total);
  assert_int_equal(total, 105);

  etcdreg_grpc_framer_t f;
  etcdreg_grpc_framer_init(&f, 1024);
  collect_t c;
  collect_init(&c, &m, 1);
  assert_int_equal(etcdreg_grpc_framer_feed(&f, buf, total, collect_cb, &c), 0);
  assert_int_equal(c.count, 1);
  assert_int_equal(c.bad, 0);
  assert_int_equal(c.last_len, 100);
  /* Zero-copy: the callback sees the message in place inside the input buffer. */
  assert_ptr_equal(c.last_ptr, buf + ETCDREG_GRPC_PREFIX);
  assert_false(etcdreg_grpc_framer_partial(&f));
  assert_null(f.msg);
  etcdreg_grpc_framer_reset(&f);
  free(buf);
  free(payload);
}

static void test_zero_copy_after_split_prefix(void **state) {
  (void)state;
  /* Prefix arrives in two pieces, the second together with the whole body: the body is
   * handed over in place inside that chunk. */
  uint8_t *payload = make_payload(300, 2);
  span_t m = {payload, 300};
  size_t total;
  uint8_t *buf = make_stream(&m, 1, &total);
  etcdreg_grpc_framer_t f;
  etcdreg_grpc_framer_init(&f, 1024);
  collect_t c;
  collect_init(&c, &m, 1);
  assert_int_equal(etcdreg_grpc_framer_feed(&f, buf, 2, collect_cb, &c), 0);
  assert_true(etcdreg_grpc_framer_partial(&f));
  assert_int_equal(c.count, 0);
  assert_int_equal(etcdreg_grpc_framer_feed(&f, buf + 2, total - 2, collect_cb, &c), 0);
  assert_int_equal(c.count, 1);
  assert_int_equal(c.bad, 0);
  assert_ptr_equal(c.last_ptr, buf + 5);
  assert_false(etcdreg_grpc_framer_partial(&f));
  assert_null(f.msg);

  /* Prefix exactly filling one chunk, body in the next: delivered intact (the framer
   * may copy here; only the content is checked). */
  collect_init(&c, &m, 1);
  assert_int_equal(etcdreg_grpc_framer_feed(&f, buf, 5, collect_cb, &c), 0);
  assert_true(etcdreg_grpc_framer_partial(&f));
  assert_int_equal(c.count, 0);
  assert_int_equal(etcdreg_grpc_framer_feed(&f, buf + 5, total - 5, collect_cb, &c), 0);
  assert_int_equal(c.count, 1);
  assert_int_equal(c.bad, 0);
  assert_false(etcdreg_grpc_framer_partial(&f));
  etcdreg_grpc_framer_reset(&f);
  free(buf);
  free(payload);
}

static void test_many_messages_one_chunk(void **state) {
  (void)state;
  static const size_t sizes[] = {0, 1, 2, 5, 300, 0, 0, 70000, 17, 4, 0, 65536, 1};
  enum { N = sizeof(sizes) / sizeof(sizes[0]) };
  span_t msgs[N];
  for (size_t i = 0; i < N; i++) msgs[i] = (span_t){make_payload(sizes[i], (unsigned)i + 10), sizes[i]};
  size_t total;
  uint8_t *buf = make_stream(msgs, N, &total);

  etcdreg_grpc_framer_t f;
  etcdreg_grpc_framer_init(&f, 1 << 20);
  collect_t c;
  collect_init(&c, msgs, N);
  assert_int_equal(etcdreg_grpc_framer_feed(&f, buf, total, collect_cb, &c), 0);
  assert_int_equal(c.count, N);
  assert_int_equal(c.bad, 0);
  /* Every message was whole inside the chunk: each pointer lies inside the buffer at
   * its own offset (zero-length messages may point anywhere). */
  size_t off = 0;
  for (size_t i = 0; i < N; i++) {
    off += ETCDREG_GRPC_PREFIX;
    if (sizes[i]) assert_ptr_equal(c.ptrs[i], buf + off);
    off += sizes[i];
  }
  assert_false(etcdreg_grpc_framer_partial(&f));
  assert_null(f.msg);
  etcdreg_grpc_framer_reset(&f);
  free(buf);
  for (size_t i = 0; i < N; i++) free((void *)msgs[i].data);
}

/* One message of `size` followed by a short trailer message, split in two at every
 * possible position (0..total), including every position inside both prefixes. */
static void split_everywhere(size_t size) {
  uint8_t *p1 = make_payload(size, (unsigned)size);
  uint8_t *p2 = make_payload(3, 99);
  span_t msgs[2] = {{p1, size}, {p2, 3}};
  size_t total;
  uint8_t *buf = make_stream(msgs, 2, &total);
  etcdreg_grpc_framer_t f;
  etcdreg_grpc_framer_init(&f, 1 << 20);
  for (size_t k = 0; k <= total; k++) {
    collect_t c;
    collect_init(&c, msgs, 2);
    int rv1 = feed_copy(&f, buf, k, &c);
    int partial_mid = etcdreg_grpc_framer_partial(&f);
    int rv2 = feed_copy(&f, buf + k, total - k, &c);
    if (rv1 || rv2 || c.count != 2 || c.bad || etcdreg_grpc_framer_partial(&f)) {
      fail_msg("size %zu split at %zu: rv1=%d rv2=%d count=%zu bad=%zu partial=%d", size, k,
               rv1, rv2, c.count, c.bad, etcdreg_grpc_framer_partial(&f));
    }
    /* Mid-way the framer is partial exactly when the split is inside a message. */
    size_t first_end = ETCDREG_GRPC_PREFIX + size;
    int expect_partial = (k > 0 && k < first_end) || (k > first_end && k < total);
    if (partial_mid != expect_partial)
      fail_msg("size %zu split at %zu: partial=%d expected %d", size, k, partial_mid, expect_partial);
  }
  etcdreg_grpc_framer_reset(&f);
  free(buf);
  free(p1);
  free(p2);
}

static void test_split_every_position(void **state) {
  (void)state;
  static const size_t sizes[] = {0, 1, 300, 70000};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) split_everywhere(sizes[i]);
}

static void test_one_byte_at_a_time(void **state) {
  (void)state;
  static const size_t sizes[] = {0, 1, 300, 70000};
  enum { N = sizeof(sizes) / sizeof(sizes[0]) };
  span_t msgs[N];
  for (size_t i = 0; i < N; i++) msgs[i] = (span_t){make_payload(sizes[i], (unsigned)i + 40), sizes[i]};
  size_t total;
  uint8_t *buf = make_stream(msgs, N, &total);
  etcdreg_grpc_framer_t f;
  etcdreg_grpc_framer_init(&f, 1 << 20);
  collect_t c;
  collect_init(&c, msgs, N);
  for (size_t i = 0; i < total; i++) {
    uint8_t *one = malloc(1);
    assert_non_null(one);
    *one = buf[i];
    int rv = etcdreg_grpc_framer_feed(&f, one, 1, collect_cb, &c);
    free(one);
    if (rv) fail_msg("byte %zu: rv %d", i, rv);
  }
  assert_int_equal(c.count, N);
  assert_int_equal(c.bad, 0);
  assert_false(etcdreg_grpc_framer_partial(&f));
  assert_null(f.msg);
  etcdreg_grpc_framer_reset(&f);
  free(buf);
  for (size_t i = 0; i < N; i++) free((void *)msgs[i].data);
}

static void test_random_chunking(void **state) {
  (void)state;
  enum { N = 200 };
  span_t msgs[N];
  srand(4242);
  for (size_t i = 0; i < N; i++) {
    size_t len = (size_t)(rand() % 5 == 0 ? rand() % 20000 : rand() % 40);
    msgs[i] = (span_t){make_payload(len, (unsigned)i), len};
  }
  size_t total;
  uint8_t *buf = make_stream(msgs, N, &total);
  for (int round = 0; round < 50; round++) {
    etcdreg_grpc_framer_t f;
    etcdreg_grpc_framer_init(&f, 1 << 20);
    collect_t c;
    collect_init(&c, msgs, N);
    size_t off = 0;
    while (off < total) {
      size_t n = (size_t)(rand() % (round < 25 ? 12 : 9000)) + 1;
      if (n > total - off) n = total - off;
      assert_int_equal(feed_copy(&f, buf + off, n, &c), 0);
      off += n;
    }
    assert_int_equal(c.count, N);
    assert_int_equal(c.bad, 0);
    assert_false(etcdreg_grpc_framer_partial(&f));
    etcdreg_grpc_framer_reset(&f);
  }
  free(buf);
  for (size_t i = 0; i < N; i++) free((void *)msgs[i].data);
}

static void test_empty_feed(void **state) {
  (void)state;
  etcdreg_grpc_framer_t f;
  etcdreg_grpc_framer_init(&f, 10);
  collect_t c;
  collect_init(&c, NULL, 0);
  uint8_t dummy = 0;
  assert_int_equal(etcdreg_grpc_framer_feed(&f, &dummy, 0, collect_cb, &c), 0);
  assert_int_equal(c.count, 0);
  assert_false(etcdreg_grpc_framer_partial(&f));
}

static void test_too_large_before_allocation(void **state) {
  (void)state;
  const size_t max = 1u << 20, declared = 1u << 30;
  uint8_t prefix[ETCDREG_GRPC_PREFIX];
  etcdreg_grpc_write_prefix(prefix, declared);

  /* Whole prefix in one chunk (and nothing else): rejected at once. */
  etcdreg_grpc_framer_t f;
  etcdreg_grpc_framer_init(&f, max);
  collect_t c;
  collect_init(&c, NULL, 0);
  assert_int_equal(feed_copy(&f, prefix, sizeof(prefix), &c), ETCDREG_ETOOLARGE);
  assert_int_equal(c.count, 0);
  assert_null(f.msg); /* nothing allocated for the declared length */
  assert_int_equal(etcdreg_grpc_framer_pending_len(&f), declared);
  etcdreg_grpc_framer_reset(&f);

  /* Prefix split over two chunks (the copying path): same. */
  etcdreg_grpc_framer_init(&f, max);
  collect_init(&c, NULL, 0);
  assert_int_equal(feed_copy(&f, prefix, 2, &c), 0);
  assert_int_equal(feed_copy(&f, prefix + 2, 3, &c), ETCDREG_ETOOLARGE);
  assert_int_equal(c.count, 0);
  assert_null(f.msg);
  assert_int_equal(etcdreg_grpc_framer_pending_len(&f), declared);
  etcdreg_grpc_framer_reset(&f);

  /* Largest possible declared length. */
  etcdreg_grpc_write_prefix(prefix, 0xffffffffu);
  etcdreg_grpc_framer_init(&f, max);
  collect_init(&c, NULL, 0);
  assert_int_equal(feed_copy(&f, prefix, 5, &c), ETCDREG_ETOOLARGE);
  assert_null(f.msg);
  assert_int_equal(etcdreg_grpc_framer_pending_len(&f), 0xffffffffu);
  etcdreg_grpc_framer_reset(&f);

  /* One over the limit is rejected, exactly the limit is accepted. */
  uint8_t *p = make_payload(1000, 5);
  span_t m = {p, 1000};
  size_t total;
  uint8_t *buf = make_stream(&m, 1, &total);
  etcdreg_grpc_framer_init(&f, 999);
  collect_init(&c, &m, 1);
  assert_int_equal(feed_copy(&f, buf, total, &c), ETCDREG_ETOOLARGE);
  assert_int_equal(c.count, 0);
  assert_int_equal(etcdreg_grpc_framer_pending_len(&f), 1000);
  etcdreg_grpc_framer_reset(&f);
  etcdreg_grpc_framer_init(&f, 1000);
  collect_init(&c, &m, 1);
  assert_int_equal(feed_copy(&f, buf, total, &c), 0);
  assert_int_equal(c.count, 1);
  assert_int_equal(c.bad, 0);
  etcdreg_grpc_framer_reset(&f);
  /* The same two limits with the prefix arriving byte by byte (the copying path). */
  for (size_t limit = 999; limit <= 1000; limit++) {
    etcdreg_grpc_framer_init(&f, limit);
    collect_init(&c, &m, 1);
    int rv = 0;
    size_t i = 0;
    for (; i < total && rv == 0; i++) rv = feed_copy(&f, buf + i, 1, &c);
    if (limit == 999) {
      assert_int_equal(rv, ETCDREG_ETOOLARGE);
      assert_int_equal(i, ETCDREG_GRPC_PREFIX); /* at the last prefix byte */
      assert_null(f.msg);
      assert_int_equal(etcdreg_grpc_framer_pending_len(&f), 1000);
      assert_int_equal(c.count, 0);
    } else {
      assert_int_equal(rv, 0);
      assert_int_equal(c.count, 1);
      assert_int_equal(c.bad, 0);
    }
    etcdreg_grpc_framer_reset(&f);
  }
  /* ... also when the limit check happens for the second message of a chunk. */
  span_t two[2] = {{p, 10}, {p, 1000}};
  free(buf);
  buf = make_stream(two, 2, &total);
  etcdreg_grpc_framer_init(&f, 500);
  collect_init(&c, two, 2);
  assert_int_equal(feed_copy(&f, buf, total, &c), ETCDREG_ETOOLARGE);
  assert_int_equal(c.count, 1);
  assert_int_equal(etcdreg_grpc_framer_pending_len(&f), 1000);
  etcdreg_grpc_framer_reset(&f);
  free(buf);
  free(p);
}

static void test_compressed_flag(void **state) {
  (void)state;
  uint8_t buf[8] = {1, 0, 0, 0, 3, 'a', 'b', 'c'};
  etcdreg_grpc_framer_t f;
  collect_t c;

  etcdreg_grpc_framer_init(&f, 100);
  collect_init(&c, NULL, 0);
  assert_int_equal(feed_copy(&f, buf, sizeof(buf), &c), ETCDREG_EPROTO);
  assert_int_equal(c.count, 0);
  etcdreg_grpc_framer_reset(&f);

  /* Flag arriving alone (copying path). */
  etcdreg_grpc_framer_init(&f, 100);
  collect_init(&c, NULL, 0);
  assert_int_equal(feed_copy(&f, buf, 1, &c), 0);
  assert_int_equal(feed_copy(&f, buf + 1, sizeof(buf) - 1, &c), ETCDREG_EPROTO);
  assert_int_equal(c.count, 0);
  etcdreg_grpc_framer_reset(&f);

  /* Any nonzero flag byte; prefix only. */
  buf[0] = 0x80;
  etcdreg_grpc_framer_init(&f, 100);
  collect_init(&c, NULL, 0);
  assert_int_equal(feed_copy(&f, buf, 5, &c), ETCDREG_EPROTO);
  assert_int_equal(c.count, 0);
  etcdreg_grpc_framer_reset(&f);

  /* A compressed message after a good one in the same chunk: the first is delivered. */
  uint8_t two[16] = {0, 0, 0, 0, 2, 'o', 'k', 1, 0, 0, 0, 3, 'a', 'b', 'c', 0};
  span_t ok = {(const uint8_t *)"ok", 2};
  etcdreg_grpc_framer_init(&f, 100);
  collect_init(&c, &ok, 1);
  assert_int_equal(feed_copy(&f, two, 15, &c), ETCDREG_EPROTO);
  assert_int_equal(c.count, 1);
  assert_int_equal(c.bad, 0);
  etcdreg_grpc_framer_reset(&f);
}

static void test_callback_error_stops(void **state) {
  (void)state;
  uint8_t *p = make_payload(50, 7);
  span_t msgs[3] = {{p, 10}, {p + 10, 20}, {p + 30, 20}};
  size_t total;
  uint8_t *buf = make_stream(msgs, 3, &total);
  etcdreg_grpc_framer_t f;
  collect_t c;

  /* Zero-copy path: stop at the second of three messages. */
  etcdreg_grpc_framer_init(&f, 100);
  collect_init(&c, msgs, 3);
  c.fail_at = 2;
  c.fail_code = ETCDREG_ECANCELED;
  assert_int_equal(feed_copy(&f, buf, total, &c), ETCDREG_ECANCELED);
  assert_int_equal(c.count, 2);
  assert_int_equal(c.bad, 0);
  etcdreg_grpc_framer_reset(&f);

  /* Copying path: the first message completes in a later chunk. */
  etcdreg_grpc_framer_init(&f, 100);
  collect_init(&c, msgs, 3);
  c.fail_at = 1;
  c.fail_code = ETCDREG_EPROTO;
  assert_int_equal(feed_copy(&f, buf, 8, &c), 0);
  assert_int_equal(c.count, 0);
  assert_int_equal(feed_copy(&f, buf + 8, total - 8, &c), ETCDREG_EPROTO);
  assert_int_equal(c.count, 1);
  assert_int_equal(c.bad, 0);
  etcdreg_grpc_framer_reset(&f);

  /* Split prefix then whole body (in-place after the prefix). */
  etcdreg_grpc_framer_init(&f, 100);
  collect_init(&c, msgs, 3);
  c.fail_at = 1;
  c.fail_code = -1234;
  assert_int_equal(feed_copy(&f, buf, 3, &c), 0);
  assert_int_equal(feed_copy(&f, buf + 3, total - 3, &c), -1234);
  assert_int_equal(c.count, 1);
  etcdreg_grpc_framer_reset(&f);

  /* Zero-length message delivered from the copying path. */
  span_t empty = {(const uint8_t *)"", 0};
  uint8_t eb[5];
  etcdreg_grpc_write_prefix(eb, 0);
  etcdreg_grpc_framer_init(&f, 100);
  collect_init(&c, &empty, 1);
  c.fail_at = 1;
  c.fail_code = ETCDREG_EINTERNAL;
  assert_int_equal(feed_copy(&f, eb, 4, &c), 0);
  assert_int_equal(feed_copy(&f, eb + 4, 1, &c), ETCDREG_EINTERNAL);
  assert_int_equal(c.count, 1);
  etcdreg_grpc_framer_reset(&f);

  free(buf);
  free(p);
}

static void test_partial_state(void **state) {
  (void)state;
  uint8_t *p = make_payload(300, 8);
  span_t m = {p, 300};
  size_t total;
  uint8_t *buf = make_stream(&m, 1, &total);
  etcdreg_grpc_framer_t f;
  etcdreg_grpc_framer_init(&f, 1000);
  collect_t c;
  collect_init(&c, &m, 1);
  assert_false(etcdreg_grpc_framer_partial(&f));
  assert_int_equal(feed_copy(&f, buf, 1, &c), 0);
  assert_true(etcdreg_grpc_framer_partial(&f));
  assert_int_equal(feed_copy(&f, buf + 1, 4, &c), 0); /* whole prefix, no body */
  assert_true(etcdreg_grpc_framer_partial(&f));
  assert_int_equal(feed_copy(&f, buf + 5, 100, &c), 0);
  assert_true(etcdreg_grpc_framer_partial(&f));
  assert_int_equal(c.count, 0);
  assert_int_equal(feed_copy(&f, buf + 105, total - 105, &c), 0);
  assert_int_equal(c.count, 1);
  assert_int_equal(c.bad, 0);
  assert_false(etcdreg_grpc_framer_partial(&f));
  assert_null(f.msg);

  /* A zero-length message leaves the framer idle too. */
  uint8_t eb[5];
  etcdreg_grpc_write_prefix(eb, 0);
  span_t empty = {(const uint8_t *)"", 0};
  collect_init(&c, &empty, 1);
  assert_int_equal(feed_copy(&f, eb, 5, &c), 0);
  assert_int_equal(c.count, 1);
  assert_false(etcdreg_grpc_framer_partial(&f));
  etcdreg_grpc_framer_reset(&f);
  free(buf);
  free(p);
}

static void test_reset_frees_partial(void **state) {
  (void)state;
  uint8_t *p = make_payload(70000, 9);
  span_t m = {p, 70000};
  size_t total;
  uint8_t *buf = make_stream(&m, 1, &total);
  etcdreg_grpc_framer_t f;
  etcdreg_grpc_framer_init(&f, 100000);
  collect_t c;
  collect_init(&c, &m, 1);
  assert_int_equal(feed_copy(&f, buf, total / 2, &c), 0);
  assert_true(etcdreg_grpc_framer_partial(&f));
  assert_non_null(f.msg); /* a buffer is held: reset must free it (ASan LeakSanitizer) */
  etcdreg_grpc_framer_reset(&f);
  assert_false(etcdreg_grpc_framer_partial(&f));
  assert_null(f.msg);
  assert_int_equal(f.max_len, 100000);
  /* Usable again from a clean state. */
  collect_init(&c, &m, 1);
  assert_int_equal(feed_copy(&f, buf, total, &c), 0);
  assert_int_equal(c.count, 1);
  assert_int_equal(c.bad, 0);
  etcdreg_grpc_framer_reset(&f);
  /* Reset of an idle framer is harmless, twice. */
  etcdreg_grpc_framer_reset(&f);
  free(buf);
  free(p);
}

static void test_write_prefix_roundtrip(void **state) {
  (void)state;
  static const size_t lens[] = {0, 1, 255, 256, 65535, 65536, 1u << 24, 0x7fffffffu, 0xffffffffu};
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    uint8_t pre[ETCDREG_GRPC_PREFIX];
    memset(pre, 0xaa, sizeof(pre));
    etcdreg_grpc_write_prefix(pre, lens[i]);
    assert_int_equal(pre[0], 0);
    uint32_t v = ((uint32_t)pre[1] << 24) | ((uint32_t)pre[2] << 16) | ((uint32_t)pre[3] << 8) | pre[4];
    assert_int_equal(v, lens[i]);
    /* The framer reads back the same length. */
    etcdreg_grpc_framer_t f;
    etcdreg_grpc_framer_init(&f, 0);
    collect_t c;
    collect_init(&c, NULL, 0);
    int rv = feed_copy(&f, pre, sizeof(pre), &c);
    if (lens[i] == 0) {
      assert_int_equal(rv, 0);
      assert_int_equal(c.count, 1);
      assert_int_equal(c.last_len, 0);
    } else {
      assert_int_equal(rv, ETCDREG_ETOOLARGE);
      assert_int_equal(etcdreg_grpc_framer_pending_len(&f), lens[i]);
    }
    etcdreg_grpc_framer_reset(&f);
  }
  /* Concrete byte layout: big-endian length. */
  uint8_t pre[5];
  etcdreg_grpc_write_prefix(pre, 0x01020304u);
  const uint8_t want[5] = {0, 1, 2, 3, 4};
  assert_memory_equal(pre, want, 5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_single_message_zero_copy),
      cmocka_unit_test(test_zero_copy_after_split_prefix),
      cmocka_unit_test(test_many_messages_one_chunk),
      cmocka_unit_test(test_split_every_position),
      cmocka_unit_test(test_one_byte_at_a_time),
      cmocka_unit_test(test_random_chunking),
      cmocka_unit_test(test_empty_feed),
      cmocka_unit_test(test_too_large_before_allocation),
      cmocka_unit_test(test_compressed_flag),
      cmocka_unit_test(test_callback_error_stops),
      cmocka_unit_test(test_partial_state),
      cmocka_unit_test(test_reset_frees_partial),
      cmocka_unit_test(test_write_prefix_roundtrip),
  };
  return cmocka_run_group_tests_name("framing", tests, NULL, NULL);
}
