/* One timer for every deadline: a binary min-heap keyed by (due, seq). */
#include "timerq.h"

#include <stdlib.h>

#include "etcdreg/error.h"

static int entry_before(const etcdreg_timer_entry_t *a, const etcdreg_timer_entry_t *b) {
  if (a->due_ms != b->due_ms) return a->due_ms < b->due_ms;
  return a->seq < b->seq;
}

static void heap_set(etcdreg_heap_t *h, size_t i, etcdreg_timer_entry_t *e) {
  h->items[i] = e;
  e->heap_index = i;
}

static void sift_up(etcdreg_heap_t *h, size_t i) {
  etcdreg_timer_entry_t *e = h->items[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!entry_before(e, h->items[parent])) break;
    heap_set(h, i, h->items[parent]);
    i = parent;
  }
  heap_set(h, i, e);
}

static void sift_down(etcdreg_heap_t *h, size_t i) {
  etcdreg_timer_entry_t *e = h->items[i];
  for (;;) {
    size_t left = 2 * i + 1, best = i;
    etcdreg_timer_entry_t *best_e = e;
    if (left < h->len && entry_before(h->items[left], best_e)) best = left, best_e = h->items[left];
    if (left + 1 < h->len && entry_before(h->items[left + 1], best_e)) best = left + 1, best_e = h->items[left + 1];
    if (best == i) break;
    heap_set(h, i, best_e);
    i = best;
  }
  heap_set(h, i, e);
}

void etcdreg_heap_init(etcdreg_heap_t *h) {
  h->items = NULL;
  h->len = h->cap = 0;
  h->next_seq = 1;
}

void etcdreg_heap_free(etcdreg_heap_t *h) {
  for (size_t i = 0; i < h->len; i++) h->items[i]->heap_index = ETCDREG_TIMER_IDLE;
  free(h->items);
  etcdreg_heap_init(h);
}

int etcdreg_heap_push(etcdreg_heap_t *h, etcdreg_timer_entry_t *e) {
  if (e->heap_index != ETCDREG_TIMER_IDLE) etcdreg_heap_remove(h, e);
  if (h->len == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    etcdreg_timer_entry_t **items = realloc(h->items, cap * sizeof(*items));
    if (!items) return ETCDREG_ENOMEM;
    h->items = items;
    h->cap = cap;
  }
  e->seq = h->next_seq++;
  h->items[h->len] = e;
  e->heap_index = h->len++;
  sift_up(h, e->heap_index);
  return 0;
}

void etcdreg_heap_remove(etcdreg_heap_t *h, etcdreg_timer_entry_t *e) {
  size_t i = e->heap_index;
  if (i == ETCDREG_TIMER_IDLE || i >= h->len || h->items[i] != e) return;
  e->heap_index = ETCDREG_TIMER_IDLE;
  h->len--;
  if (i == h->len) return;
  heap_set(h, i, h->items[h->len]);
  /* The moved entry may belong above or below its new slot. */
  if (i > 0 && entry_before(h->items[i], h->items[(i - 1) / 2]))
    sift_up(h, i);
  else
    sift_down(h, i);
}

etcdreg_timer_entry_t *etcdreg_heap_peek(const etcdreg_heap_t *h) {
  return h->len ? h->items[0] : NULL;
}

etcdreg_timer_entry_t *etcdreg_heap_pop(etcdreg_heap_t *h) {
  etcdreg_timer_entry_t *e = etcdreg_heap_peek(h);
  if (e) etcdreg_heap_remove(h, e);
  return e;
}

static void timerq_fire(uv_timer_t *t);

static void timerq_arm(etcdreg_timerq_t *q) {
  etcdreg_timer_entry_t *first = etcdreg_heap_peek(&q->heap);
  if (!first) {
    if (q->armed_for) uv_timer_stop(&q->timer);
    q->armed_for = 0;
    return;
  }
  if (q->armed_for == first->due_ms && uv_is_active((uv_handle_t *)&q->timer)) return;
  uint64_t now = uv_now(q->timer.loop);
  uint64_t delay = first->due_ms > now ? first->due_ms - now : 0;
  q->armed_for = first->due_ms ? first->due_ms : 1;
  uv_timer_start(&q->timer, timerq_fire, delay, 0);
}

static void timerq_fire(uv_timer_t *t) {
  etcdreg_timerq_t *q = t->data;
  uint64_t now = uv_now(t->loop);
  q->armed_for = 0;
  /* Entries added by a callback for "now" fire in this same pass; ones in the future wait. */
  etcdreg_timer_entry_t *e;
  while ((e = etcdreg_heap_peek(&q->heap)) && e->due_ms <= now) {
    etcdreg_heap_remove(&q->heap, e);
    e->fn(e);
  }
  timerq_arm(q);
}

int etcdreg_timerq_init(uv_loop_t *loop, etcdreg_timerq_t *q) {
  etcdreg_heap_init(&q->heap);
  q->armed_for = 0;
  q->on_closed = NULL;
  int rv = uv_timer_init(loop, &q->timer);
  if (rv) return ETCDREG_EINTERNAL;
  q->timer.data = q;
  return 0;
}

int etcdreg_timerq_add(etcdreg_timerq_t *q, etcdreg_timer_entry_t *e, uint64_t due_ms) {
  e->due_ms = due_ms;
  int rv = etcdreg_heap_push(&q->heap, e);
  if (rv) return rv;
  timerq_arm(q);
  return 0;
}

void etcdreg_timerq_remove(etcdreg_timerq_t *q, etcdreg_timer_entry_t *e) {
  if (!etcdreg_timer_entry_active(e)) return;
  etcdreg_heap_remove(&q->heap, e);
  timerq_arm(q);
}

static void timerq_closed(uv_handle_t *h) {
  etcdreg_timerq_t *q = h->data;
  if (q->on_closed) q->on_closed(q);
}

void etcdreg_timerq_close(etcdreg_timerq_t *q, void (*on_closed)(etcdreg_timerq_t *q)) {
  etcdreg_heap_free(&q->heap);
  q->on_closed = on_closed;
  uv_close((uv_handle_t *)&q->timer, timerq_closed);
}
