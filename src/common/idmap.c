#include "idmap.h"

#include <stdlib.h>

#include "etcdreg/error.h"

static size_t hash_id(int64_t key) {
  uint64_t x = (uint64_t)key + 0x9e3779b97f4a7c15ULL; /* splitmix64 finaliser */
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return (size_t)(x ^ (x >> 31));
}

void etcdreg_idmap_init(etcdreg_idmap_t *m) {
  m->slots = NULL;
  m->cap = m->len = 0;
}

void etcdreg_idmap_free(etcdreg_idmap_t *m) {
  free(m->slots);
  etcdreg_idmap_init(m);
}

static int idmap_grow(etcdreg_idmap_t *m) {
  size_t cap = m->cap ? m->cap * 2 : 16;
  etcdreg_idmap_slot_t *slots = calloc(cap, sizeof(*slots));
  if (!slots) return ETCDREG_ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->slots[i].value) continue;
    size_t j = hash_id(m->slots[i].key) & (cap - 1);
    while (slots[j].value) j = (j + 1) & (cap - 1);
    slots[j] = m->slots[i];
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  return 0;
}

int etcdreg_idmap_put(etcdreg_idmap_t *m, int64_t key, void *value) {
  if (!value) return ETCDREG_EINVAL;
  if ((m->len + 1) * 4 > m->cap * 3) { /* load factor <= 0.75 */
    int rv = idmap_grow(m);
    if (rv) return rv;
  }
  size_t i = hash_id(key) & (m->cap - 1);
  while (m->slots[i].value) {
    if (m->slots[i].key == key) {
      m->slots[i].value = value;
      return 0;
    }
    i = (i + 1) & (m->cap - 1);
  }
  m->slots[i].key = key;
  m->slots[i].value = value;
  m->len++;
  return 0;
}

void *etcdreg_idmap_get(const etcdreg_idmap_t *m, int64_t key) {
  if (!m->cap) return NULL;
  size_t i = hash_id(key) & (m->cap - 1);
  while (m->slots[i].value) {
    if (m->slots[i].key == key) return m->slots[i].value;
    i = (i + 1) & (m->cap - 1);
  }
  return NULL;
}

void *etcdreg_idmap_remove(etcdreg_idmap_t *m, int64_t key) {
  if (!m->cap) return NULL;
  size_t mask = m->cap - 1, i = hash_id(key) & mask;
  while (m->slots[i].value && m->slots[i].key != key) i = (i + 1) & mask;
  if (!m->slots[i].value) return NULL;
  void *value = m->slots[i].value;
  m->slots[i].value = NULL;
  m->len--;
  /* Shift back later entries of the cluster whose home slot is not after the hole. */
  size_t hole = i, j = (i + 1) & mask;
  while (m->slots[j].value) {
    size_t home = hash_id(m->slots[j].key) & mask;
    int movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
    if (movable) {
      m->slots[hole] = m->slots[j];
      m->slots[j].value = NULL;
      hole = j;
    }
    j = (j + 1) & mask;
  }
  return value;
}
