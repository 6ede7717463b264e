/* idmap: int64 id -> pointer, open addressing with linear probing and backward-shift
 * deletion (no tombstones), so look-ups stay O(1) under churn. Values are never NULL. */
#ifndef ETCDREG_IDMAP_H
#define ETCDREG_IDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int64_t key;
  void *value; /* NULL: empty slot */
} etcdreg_idmap_slot_t;

typedef struct {
  etcdreg_idmap_slot_t *slots;
  size_t cap;  /* power of two, or 0 */
  size_t len;
} etcdreg_idmap_t;

void etcdreg_idmap_init(etcdreg_idmap_t *m);
void etcdreg_idmap_free(etcdreg_idmap_t *m);
/* Inserts or replaces. 0 or ETCDREG_ENOMEM / ETCDREG_EINVAL (NULL value). */
int etcdreg_idmap_put(etcdreg_idmap_t *m, int64_t key, void *value);
void *etcdreg_idmap_get(const etcdreg_idmap_t *m, int64_t key);
/* Removes and returns the value, or NULL. */
void *etcdreg_idmap_remove(etcdreg_idmap_t *m, int64_t key);

#endif
