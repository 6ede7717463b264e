/* Unit tests for the deadline heap and timer queue (src/common/timerq.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "common/timerq.h"
#include "etcdreg/error.h"

/* ---- the pure heap ---- */

static void noop_fn(etcdreg_timer_entry_t *e) { (void)e; }

/* Checks the heap property and that every entry knows its own index. */
static void check_heap(const etcdreg_heap_t *h) {
  for (size_t i = 0; i < h->len; i++) {
    const etcdreg_timer_entry_t *e = h->items[i];
    if (e->heap_index != i) fail_msg("items[%zu]->heap_index = %zu", i, e->heap_index);
    if (i > 0) {
      const etcdreg_timer_entry_t *p = h->items[(i - 1) / 2];
      if (p->due_ms > e->due_ms || (p->due_ms == e->due_ms && p->seq > e->seq))
        fail_msg("heap order broken at %zu", i);
    }
  }
}

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return rng_state >> 33;
}

static void test_heap_sorted_pop(void **state) {
  (void)state;
  enum { N = 2000 };
  etcdreg_timer_entry_t *es = calloc(N, sizeof(*es));
  assert_non_null(es);
  etcdreg_heap_t h;
  etcdreg_heap_init(&h);
  assert_null(etcdreg_heap_peek(&h));
  assert_null(etcdreg_heap_pop(&h));
  rng_state = 1;
  for (size_t i = 0; i < N; i++) {
    etcdreg_timer_entry_init(&es[i], noop_fn);
    assert_false(etcdreg_timer_entry_active(&es[i]));
    es[i].due_ms = rnd() % 5000;
    assert_int_equal(etcdreg_heap_push(&h, &es[i]), 0);
    assert_true(etcdreg_timer_entry_active(&es[i]));
  }
  assert_int_equal(h.len, N);
  check_heap(&h);
  uint64_t last_due = 0, last_seq = 0;
  for (size_t i = 0; i < N; i++) {
    etcdreg_timer_entry_t *peek = etcdreg_heap_peek(&h);
    etcdreg_timer_entry_t *e = etcdreg_heap_pop(&h);
    assert_non_null(e);
    assert_ptr_equal(peek, e);
    assert_false(etcdreg_timer_entry_active(e));
    assert_true(e->due_ms >= last_due);
    if (i > 0 && e->due_ms == last_due) assert_true(e->seq > last_seq);
    last_due = e->due_ms;
    last_seq = e->seq;
    if (i % 97 == 0) check_heap(&h);
  }
  assert_int_equal(h.len, 0);
  assert_null(etcdreg_heap_pop(&h));
  etcdreg_heap_free(&h);
  free(es);
}

static void test_heap_ties_insertion_order(void **state) {
  (void)state;
  enum { N = 300 };
  etcdreg_timer_entry_t es[N];
  etcdreg_heap_t h;
  etcdreg_heap_init(&h);
  /* Three distinct due times, interleaved. */
  for (size_t i = 0; i < N; i++) {
    etcdreg_timer_entry_init(&es[i], noop_fn);
    es[i].due_ms = 100 + (i * 7) % 3;
    assert_int_equal(etcdreg_heap_push(&h, &es[i]), 0);
  }
  for (uint64_t due = 100; due < 103; due++) {
    for (size_t i = 0; i < N; i++) {
      if (es[i].due_ms != due) continue;
      etcdreg_timer_entry_t *e = etcdreg_heap_pop(&h);
      assert_ptr_equal(e, &es[i]); /* same due: insertion order */
    }
  }
  assert_int_equal(h.len, 0);
  /* All equal. */
  for (size_t i = 0; i < N; i++) {
    es[i].due_ms = 7;
    assert_int_equal(etcdreg_heap_push(&h, &es[i]), 0);
  }
  for (size_t i = 0; i < N; i++) assert_ptr_equal(etcdreg_heap_pop(&h), &es[i]);
  etcdreg_heap_free(&h);
}

static void test_heap_remove_positions(void **state) {
  (void)state;
  enum { N = 64 };
  etcdreg_timer_entry_t es[N];
  for (int which = 0; which < 3; which++) {
    etcdreg_heap_t h;
    etcdreg_heap_init(&h);
    for (size_t i = 0; i < N; i++) {
      etcdreg_timer_entry_init(&es[i], noop_fn);
      es[i].due_ms = (i * 37) % N; /* a permutation of 0..N-1 */
      assert_int_equal(etcdreg_heap_push(&h, &es[i]), 0);
    }
    /* Remove the root, an entry from the middle or the last slot, repeatedly. */
    uint8_t removed[N] = {0};
    for (int k = 0; k < N / 2; k++) {
      size_t idx = which == 0 ? 0 : which == 1 ? h.len / 2 : h.len - 1;
      etcdreg_timer_entry_t *e = h.items[idx];
      etcdreg_heap_remove(&h, e);
      assert_false(etcdreg_timer_entry_active(e));
      removed[e - es] = 1;
      check_heap(&h);
    }
    assert_int_equal(h.len, N - N / 2);
    uint64_t last = 0;
    size_t popped = 0;
    etcdreg_timer_entry_t *e;
    while ((e = etcdreg_heap_pop(&h))) {
      assert_false(removed[e - es]);
      assert_true(e->due_ms >= last);
      last = e->due_ms;
      popped++;
    }
    assert_int_equal(popped, N - N / 2);
    etcdreg_heap_free(&h);
  }
}

static void test_heap_remove_idle_noop(void **state) {
  (void)state;
  etcdreg_timer_entry_t a, b, c, other;
  etcdreg_timer_entry_init(&a, noop_fn);
  etcdreg_timer_entry_init(&b, noop_fn);
  etcdreg_timer_entry_init(&c, noop_fn);
  etcdreg_timer_entry_init(&other, noop_fn);
  etcdreg_heap_t h, h2;
  etcdreg_heap_init(&h);
  etcdreg_heap_init(&h2);
  etcdreg_heap_remove(&h, &a); /* idle, empty heap */
  a.due_ms = 1;
  b.due_ms = 2;
  assert_int_equal(etcdreg_heap_push(&h, &a), 0);
  assert_int_equal(etcdreg_heap_push(&h, &b), 0);
  etcdreg_heap_remove(&h, &c); /* idle */
  assert_int_equal(h.len, 2);
  check_heap(&h);
  /* Removing twice: the second is a no-op. */
  etcdreg_heap_remove(&h, &b);
  etcdreg_heap_remove(&h, &b);
  assert_int_equal(h.len, 1);
  assert_ptr_equal(etcdreg_heap_peek(&h), &a);
  /* An entry queued on another heap is not this heap's to remove. */
  other.due_ms = 0;
  assert_int_equal(etcdreg_heap_push(&h2, &other), 0);
  assert_int_equal(other.heap_index, 0);
  etcdreg_heap_remove(&h, &other);
  assert_int_equal(h.len, 1);
  assert_ptr_equal(etcdreg_heap_peek(&h), &a);
  assert_true(etcdreg_timer_entry_active(&other));
  /* heap_free leaves queued entries idle. */
  etcdreg_heap_free(&h);
  etcdreg_heap_free(&h2);
  assert_false(etcdreg_timer_entry_active(&a));
  assert_false(etcdreg_timer_entry_active(&other));
  assert_null(etcdreg_heap_peek(&h));
}

static void test_heap_repush_moves(void **state) {
  (void)state;
  etcdreg_timer_entry_t a, b, c;
  etcdreg_timer_entry_init(&a, noop_fn);
  etcdreg_timer_entry_init(&b, noop_fn);
  etcdreg_timer_entry_init(&c, noop_fn);
  etcdreg_heap_t h;
  etcdreg_heap_init(&h);
  a.due_ms = 10;
  b.due_ms = 20;
  c.due_ms = 30;
  assert_int_equal(etcdreg_heap_push(&h, &a), 0);
  assert_int_equal(etcdreg_heap_push(&h, &b), 0);
  assert_int_equal(etcdreg_heap_push(&h, &c), 0);
  /* Later. */
  a.due_ms = 40;
  assert_int_equal(etcdreg_heap_push(&h, &a), 0);
  assert_int_equal(h.len, 3);
  check_heap(&h);
  assert_ptr_equal(etcdreg_heap_peek(&h), &b);
  /* Earlier. */
  c.due_ms = 5;
  assert_int_equal(etcdreg_heap_push(&h, &c), 0);
  assert_int_equal(h.len, 3);
  check_heap(&h);
  /* Same due time as another: re-pushing puts it behind (new insertion). */
  b.due_ms = 5;
  assert_int_equal(etcdreg_heap_push(&h, &b), 0);
  check_heap(&h);
  assert_ptr_equal(etcdreg_heap_pop(&h), &c);
  assert_ptr_equal(etcdreg_heap_pop(&h), &b);
  assert_ptr_equal(etcdreg_heap_pop(&h), &a);
  assert_null(etcdreg_heap_pop(&h));
  etcdreg_heap_free(&h);
}

/* Random push / re-push / remove / pop against a reference model. */
typedef struct {
  etcdreg_timer_entry_t e;
  int active;       /* reference: queued */
  uint64_t order;   /* reference: insertion counter of the last push */
} model_entry_t;

static model_entry_t *model_min(model_entry_t *m, size_t n) {
  model_entry_t *best = NULL;
  for (size_t i = 0; i < n; i++) {
    if (!m[i].active) continue;
    if (!best || m[i].e.due_ms < best->e.due_ms ||
        (m[i].e.due_ms == best->e.due_ms && m[i].order < best->order))
      best = &m[i];
  }
  return best;
}

static void test_heap_random_against_model(void **state) {
  (void)state;
  enum { POOL = 150, OPS = 10000 };
  for (uint64_t seed = 1; seed <= 5; seed++) {
    model_entry_t *m = calloc(POOL, sizeof(*m));
    assert_non_null(m);
    for (size_t i = 0; i < POOL; i++) etcdreg_timer_entry_init(&m[i].e, noop_fn);
    etcdreg_heap_t h;
    etcdreg_heap_init(&h);
    rng_state = seed * 7919;
    uint64_t counter = 0;
    size_t active = 0;
    for (int op = 0; op < OPS; op++) {
      model_entry_t *x = &m[rnd() % POOL];
      unsigned kind = (unsigned)(rnd() % 10);
      if (kind < 4) { /* push or re-push with a new due time (small range: many ties) */
        x->e.due_ms = rnd() % 200;
        assert_int_equal(etcdreg_heap_push(&h, &x->e), 0);
        if (!x->active) active++;
        x->active = 1;
        x->order = ++counter;
      } else if (kind < 7) { /* remove (no-op when idle) */
        etcdreg_heap_remove(&h, &x->e);
        if (x->active) active--;
        x->active = 0;
      } else if (kind < 9) { /* pop */
        model_entry_t *want = model_min(m, POOL);
        etcdreg_timer_entry_t *got = etcdreg_heap_pop(&h);
        if (!want) {
          assert_null(got);
        } else {
          if (got != &want->e) fail_msg("seed %llu op %d: pop mismatch", (unsigned long long)seed, op);
          want->active = 0;
          active--;
        }
      } else { /* peek */
        model_entry_t *want = model_min(m, POOL);
        etcdreg_timer_entry_t *got = etcdreg_heap_peek(&h);
        assert_ptr_equal(got, want ? &want->e : NULL);
      }
      assert_int_equal(h.len, active);
      for (size_t i = 0; i < POOL; i++)
        if (etcdreg_timer_entry_active(&m[i].e) != m[i].active)
          fail_msg("seed %llu op %d: entry %zu active mismatch", (unsigned long long)seed, op, i);
      if (op % 50 == 0) check_heap(&h);
    }
    /* Drain: must match the model's sorted order. */
    model_entry_t *want;
    while ((want = model_min(m, POOL))) {
      assert_ptr_equal(etcdreg_heap_pop(&h), &want->e);
      want->active = 0;
    }
    assert_null(etcdreg_heap_pop(&h));
    etcdreg_heap_free(&h);
    free(m);
  }
}

/* ---- the timer queue on a real loop ---- */

typedef struct tq_ctx tq_ctx_t;

typedef struct {
  etcdreg_timer_entry_t e;
  int id;
  tq_ctx_t *ctx;
  int action;        /* what the callback does, see tq_fire */
  uint64_t arg;
  void *target;
} tq_entry_t;

struct tq_ctx {
  uv_loop_t loop;
  etcdreg_timerq_t q;
  uv_timer_t guard;
  int guard_fired;
  int fired[64];
  size_t n_fired;
  int closed_calls;
};

enum { ACT_NONE, ACT_READD_LATER_ONCE, ACT_ADD_NOW, ACT_REMOVE, ACT_CLOSE };

static void tq_on_closed(etcdreg_timerq_t *q) {
  tq_ctx_t *c = (tq_ctx_t *)((char *)q - offsetof(tq_ctx_t, q));
  c->closed_calls++;
}

static void tq_fire(etcdreg_timer_entry_t *e) {
  tq_entry_t *te = (tq_entry_t *)((char *)e - offsetof(tq_entry_t, e));
  tq_ctx_t *c = te->ctx;
  assert_false(etcdreg_timer_entry_active(e)); /* dequeued before its callback */
  if (c->n_fired < 64) c->fired[c->n_fired++] = te->id;
  switch (te->action) {
  case ACT_READD_LATER_ONCE:
    te->action = ACT_NONE;
    te->id += 100;
    assert_int_equal(etcdreg_timerq_add(&c->q, e, uv_now(&c->loop) + te->arg), 0);
    break;
  case ACT_ADD_NOW: {
    tq_entry_t *other = te->target;
    assert_int_equal(etcdreg_timerq_add(&c->q, &other->e, uv_now(&c->loop)), 0);
    break;
  }
  case ACT_REMOVE: {
    tq_entry_t *other = te->target;
    etcdreg_timerq_remove(&c->q, &other->e);
    break;
  }
  case ACT_CLOSE:
    etcdreg_timerq_close(&c->q, tq_on_closed);
    break;
  default: break;
  }
}

static void guard_cb(uv_timer_t *t) {
  tq_ctx_t *c = t->data;
  c->guard_fired = 1;
  uv_stop(t->loop);
}

static void tq_setup(tq_ctx_t *c) {
  memset(c, 0, sizeof(*c));
  assert_int_equal(uv_loop_init(&c->loop), 0);
  assert_int_equal(etcdreg_timerq_init(&c->loop, &c->q), 0);
  /* A safety net that does not keep the loop alive: stops a run that would hang. */
  assert_int_equal(uv_timer_init(&c->loop, &c->guard), 0);
  c->guard.data = c;
  assert_int_equal(uv_timer_start(&c->guard, guard_cb, 5000, 0), 0);
  uv_unref((uv_handle_t *)&c->guard);
}

static void tq_entry(tq_ctx_t *c, tq_entry_t *te, int id) {
  memset(te, 0, sizeof(*te));
  etcdreg_timer_entry_init(&te->e, tq_fire);
  te->id = id;
  te->ctx = c;
}

/* Closes the queue (unless closed already) and the guard, drains the loop, closes it. */
static void tq_teardown(tq_ctx_t *c, int already_closed) {
  if (!already_closed) etcdreg_timerq_close(&c->q, tq_on_closed);
  uv_close((uv_handle_t *)&c->guard, NULL);
  assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(c->closed_calls, 1);
  assert_int_equal(uv_loop_close(&c->loop), 0);
}

static void expect_fired(const tq_ctx_t *c, const int *want, size_t n) {
  if (c->n_fired != n) fail_msg("fired %zu entries, expected %zu", c->n_fired, n);
  for (size_t i = 0; i < n; i++)
    if (c->fired[i] != want[i]) fail_msg("firing #%zu was %d, expected %d", i, c->fired[i], want[i]);
}

static void test_timerq_fires_in_order(void **state) {
  (void)state;
  tq_ctx_t *c = malloc(sizeof(*c));
  assert_non_null(c);
  tq_setup(c);
  tq_entry_t es[6];
  static const uint64_t delays[6] = {30, 10, 20, 1, 10, 0};
  uint64_t now = uv_now(&c->loop);
  for (int i = 0; i < 6; i++) {
    tq_entry(c, &es[i], i);
    assert_int_equal(etcdreg_timerq_add(&c->q, &es[i].e, now + delays[i]), 0);
  }
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_false(c->guard_fired);
  static const int want[] = {5, 3, 1, 4, 2, 0};
  expect_fired(c, want, 6);
  for (int i = 0; i < 6; i++) assert_false(etcdreg_timer_entry_active(&es[i].e));
  tq_teardown(c, 0);
  free(c);
}

static void test_timerq_due_in_the_past(void **state) {
  (void)state;
  tq_ctx_t *c = malloc(sizeof(*c));
  assert_non_null(c);
  tq_setup(c);
  tq_entry_t a, b;
  tq_entry(c, &a, 1);
  tq_entry(c, &b, 2);
  uv_update_time(&c->loop);
  assert_int_equal(etcdreg_timerq_add(&c->q, &a.e, 0), 0); /* due at loop time 0 */
  assert_int_equal(etcdreg_timerq_add(&c->q, &b.e, uv_now(&c->loop) > 0 ? uv_now(&c->loop) - 1 : 0), 0);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_false(c->guard_fired);
  static const int want[] = {1, 2};
  expect_fired(c, want, 2);
  tq_teardown(c, 0);
  free(c);
}

static void test_timerq_removed_never_fires(void **state) {
  (void)state;
  tq_ctx_t *c = malloc(sizeof(*c));
  assert_non_null(c);
  tq_setup(c);
  tq_entry_t es[5];
  uint64_t now = uv_now(&c->loop);
  for (int i = 0; i < 5; i++) {
    tq_entry(c, &es[i], i);
    assert_int_equal(etcdreg_timerq_add(&c->q, &es[i].e, now + 2 + 3 * (uint64_t)i), 0);
  }
  assert_int_equal(c->q.armed_for, es[0].e.due_ms);
  etcdreg_timerq_remove(&c->q, &es[0].e); /* the earliest: the timer must re-arm */
  assert_int_equal(c->q.armed_for, es[1].e.due_ms);
  assert_true(uv_is_active((uv_handle_t *)&c->q.timer));
  etcdreg_timerq_remove(&c->q, &es[2].e); /* middle */
  etcdreg_timerq_remove(&c->q, &es[4].e); /* last */
  etcdreg_timerq_remove(&c->q, &es[4].e); /* again: no-op */
  assert_false(etcdreg_timer_entry_active(&es[0].e));
  /* Removing all but one, then removing everything, leaves an idle loop. */
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_false(c->guard_fired);
  static const int want[] = {1, 3};
  expect_fired(c, want, 2);

  /* Everything removed: uv_run returns at once (nothing keeps the loop alive). */
  c->n_fired = 0;
  now = uv_now(&c->loop);
  for (int i = 0; i < 5; i++) assert_int_equal(etcdreg_timerq_add(&c->q, &es[i].e, now + 5), 0);
  for (int i = 0; i < 5; i++) etcdreg_timerq_remove(&c->q, &es[i].e);
  assert_false(uv_is_active((uv_handle_t *)&c->q.timer)); /* the timer was stopped */
  assert_int_equal(uv_run(&c->loop, UV_RUN_NOWAIT), 0);   /* nothing keeps the loop alive */
  assert_false(c->guard_fired);
  assert_int_equal(c->n_fired, 0);
  tq_teardown(c, 0);
  free(c);
}

static void test_timerq_remove_from_callback(void **state) {
  (void)state;
  tq_ctx_t *c = malloc(sizeof(*c));
  assert_non_null(c);
  tq_setup(c);
  tq_entry_t a, b, d;
  tq_entry(c, &a, 1);
  tq_entry(c, &b, 2);
  tq_entry(c, &d, 3);
  uint64_t now = uv_now(&c->loop);
  /* a and b are due together; a's callback removes b, which must not fire. */
  a.action = ACT_REMOVE;
  a.target = &b;
  assert_int_equal(etcdreg_timerq_add(&c->q, &a.e, now + 2), 0);
  assert_int_equal(etcdreg_timerq_add(&c->q, &b.e, now + 2), 0);
  assert_int_equal(etcdreg_timerq_add(&c->q, &d.e, now + 4), 0);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_false(c->guard_fired);
  static const int want[] = {1, 3};
  expect_fired(c, want, 2);
  tq_teardown(c, 0);
  free(c);
}

static void test_timerq_readd_from_callback(void **state) {
  (void)state;
  tq_ctx_t *c = malloc(sizeof(*c));
  assert_non_null(c);
  tq_setup(c);
  tq_entry_t a, b, x, y, z;
  tq_entry(c, &a, 1);
  tq_entry(c, &b, 2);
  tq_entry(c, &x, 3);
  tq_entry(c, &y, 4);
  tq_entry(c, &z, 5);
  uint64_t now = uv_now(&c->loop);
  /* a fires, re-adds itself 60 ms after its own firing: after b, x, y and z. */
  a.action = ACT_READD_LATER_ONCE;
  a.arg = 60;
  /* x's callback adds y due "now": y fires before z, which is due later. */
  x.action = ACT_ADD_NOW;
  x.target = &y;
  assert_int_equal(etcdreg_timerq_add(&c->q, &a.e, now + 1), 0);
  assert_int_equal(etcdreg_timerq_add(&c->q, &b.e, now + 10), 0);
  assert_int_equal(etcdreg_timerq_add(&c->q, &x.e, now + 12), 0);
  assert_int_equal(etcdreg_timerq_add(&c->q, &z.e, now + 40), 0);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_false(c->guard_fired);
  static const int want[] = {1, 2, 3, 4, 5, 101};
  expect_fired(c, want, 6);
  tq_teardown(c, 0);
  free(c);
}

static void test_timerq_close_drops_queued(void **state) {
  (void)state;
  tq_ctx_t *c = malloc(sizeof(*c));
  assert_non_null(c);
  tq_setup(c);
  tq_entry_t es[4];
  uint64_t now = uv_now(&c->loop);
  for (int i = 0; i < 4; i++) {
    tq_entry(c, &es[i], i);
    assert_int_equal(etcdreg_timerq_add(&c->q, &es[i].e, now + (i == 0 ? 0 : 1000)), 0);
  }
  etcdreg_timerq_close(&c->q, tq_on_closed);
  for (int i = 0; i < 4; i++) assert_false(etcdreg_timer_entry_active(&es[i].e));
  assert_int_equal(c->closed_calls, 0); /* from the loop, not from inside close */
  tq_teardown(c, 1);
  assert_false(c->guard_fired);
  assert_int_equal(c->n_fired, 0);
  free(c);
}

static void test_timerq_close_from_callback(void **state) {
  (void)state;
  tq_ctx_t *c = malloc(sizeof(*c));
  assert_non_null(c);
  tq_setup(c);
  tq_entry_t a, b, d;
  tq_entry(c, &a, 1);
  tq_entry(c, &b, 2);
  tq_entry(c, &d, 3);
  uint64_t now = uv_now(&c->loop);
  a.action = ACT_CLOSE; /* b is due at the same time, d later: neither may fire */
  assert_int_equal(etcdreg_timerq_add(&c->q, &a.e, now + 1), 0);
  assert_int_equal(etcdreg_timerq_add(&c->q, &b.e, now + 1), 0);
  assert_int_equal(etcdreg_timerq_add(&c->q, &d.e, now + 3), 0);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_false(c->guard_fired);
  static const int want[] = {1};
  expect_fired(c, want, 1);
  assert_false(etcdreg_timer_entry_active(&b.e));
  assert_false(etcdreg_timer_entry_active(&d.e));
  tq_teardown(c, 1);
  free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_heap_sorted_pop),
      cmocka_unit_test(test_heap_ties_insertion_order),
      cmocka_unit_test(test_heap_remove_positions),
      cmocka_unit_test(test_heap_remove_idle_noop),
      cmocka_unit_test(test_heap_repush_moves),
      cmocka_unit_test(test_heap_random_against_model),
      cmocka_unit_test(test_timerq_fires_in_order),
      cmocka_unit_test(test_timerq_due_in_the_past),
      cmocka_unit_test(test_timerq_removed_never_fires),
      cmocka_unit_test(test_timerq_remove_from_callback),
      cmocka_unit_test(test_timerq_readd_from_callback),
      cmocka_unit_test(test_timerq_close_drops_queued),
      cmocka_unit_test(test_timerq_close_from_callback),
  };
  return cmocka_run_group_tests_name("timerq", tests, NULL, NULL);
}
