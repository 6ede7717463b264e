/* codec: the registry's data formats, shared with the Go library go.lumeweb.com/etcd-registry
 * (shared/seed-spec.md §2, §3, §6): base path cleaning, key layout, validation with the Go
 * library's messages (plus this port's fixes), label merge, RFC 3339 times and the Node /
 * ServiceGroupData JSON, written byte for byte as Go's encoding/json writes it and read as
 * leniently as Go reads it.
 *
 * Conventions: functions returning char * return a malloc'd string (NULL only on ENOMEM);
 * functions returning int return 0 or a negative ETCDREG_E... code and, when `err` is not
 * NULL and `errlen` > 0, write a NUL-terminated message into err (truncated to fit). No
 * function aborts on bad input. */
#ifndef ETCDREG_REGISTRY_CODEC_H
#define ETCDREG_REGISTRY_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "../common/arena.h"
#include "etcdreg/error.h"
#include "etcdreg/registry.h"

/* ---- base path and keys ---- */

/* Cleans `base` as Go's path.Join(base) does (path.Clean: repeated '/' collapse, trailing
 * '/' dropped, "." and ".." resolved, relative stays relative). *out is malloc'd.
 * NULL, "" or whitespace-only: "etcd base path cannot be empty"; a result of "/" or ".":
 * "etcd base path cannot be the root". 0, ETCDREG_EINVAL or ETCDREG_ENOMEM. */
int etcdreg__base_clean(const char *base, char **out, char *err, size_t errlen);

/* Plain concatenation (base already cleaned, names already validated). */
char *etcdreg__group_key(const char *base, const char *group);      /* <base>/<group>         */
char *etcdreg__group_prefix(const char *base, const char *group);   /* <base>/<group>/        */
char *etcdreg__nodes_prefix(const char *base, const char *group);   /* <base>/<group>/nodes/  */
char *etcdreg__node_key(const char *base, const char *group, const char *id,
                        const char *exporter_type);                 /* .../nodes/<id>_<exp>   */
char *etcdreg__base_prefix(const char *base);                       /* <base>/                */

/* ---- validation (ETCDREG_EINVAL with the message) ---- */

/* ^[A-Za-z0-9_-]{1,63}$, with the Go library's messages checked in its order. NULL is "". */
int etcdreg__validate_group_name(const char *name, char *err, size_t errlen);

/* The Go library's node rules in its order, plus: id / exporter type without '/' and not
 * "." or "..", port <= 65535, duplicate label keys. Labels are checked in sorted key order
 * (deterministic); NULL key or value pointers count as "". `ttl_ms` == 0 is rejected. */
int etcdreg__validate_node(const etcdreg_node_t *n, uint64_t ttl_ms, char *err, size_t errlen);

/* The Go library's CommonLabels rules (keys Go-quoted as %q does), in sorted key order, plus
 * duplicate keys: "duplicate label key in CommonLabels: \"<k>\"". `l` may be NULL if n == 0. */
int etcdreg__validate_common_labels(const etcdreg_label_t *l, size_t n, char *err, size_t errlen);

/* ---- labels (strings copied into the arena; NULL key/value copied as "") ---- */

/* All n labels, stably sorted by key (bytewise), duplicates kept. *out is NULL when n == 0.
 * 0 or ETCDREG_ENOMEM. */
int etcdreg__labels_sort_copy(etcdreg_arena_t *a, const etcdreg_label_t *labels, size_t n,
                              etcdreg_label_t **out);

/* Node labels merged with common labels: sorted by key, one entry per key; a node label wins
 * over a common label (a key present with "" counts as present), and within one list the
 * first occurrence wins. *out is NULL when the result is empty. 0 or ETCDREG_ENOMEM. */
int etcdreg__labels_merge(etcdreg_arena_t *a, const etcdreg_label_t *node_labels, size_t n,
                          const etcdreg_label_t *common, size_t m, etcdreg_label_t **out,
                          size_t *out_n);

/* ---- times ---- */

#define ETCDREG__TIME_BUF 40

/* RFC 3339 in UTC with nanoseconds, trailing fractional zeros trimmed (no '.' when the
 * fraction is 0), suffix 'Z': Go's time.Time.UTC().MarshalJSON() without the quotes, e.g.
 * "2026-11-24T06:47:33.63604489Z". `buf` holds >= ETCDREG__TIME_BUF bytes; returns the
 * length written (NUL-terminated). Pure: 0 gives "1970-01-01T00:00:00Z". */
size_t etcdreg__time_format(int64_t unix_ns, char *buf);

/* Parses what Go's time.Time.UnmarshalJSON accepts (RFC 3339: "Z" or a +hh:mm / -hh:mm
 * offset, optional fraction of any number of digits, digits past the 9th ignored, year
 * 0000..9999, day checked against the month). The Go zero time (0001-01-01T00:00:00Z, in any
 * offset) gives 0, the encoders' "unknown". 0 or ETCDREG_EDECODE (malformed, or an instant
 * outside the int64 nanosecond range 1677..2262). */
int etcdreg__time_parse(const char *s, int64_t *unix_ns);

/* ---- JSON ---- */

/* {"id":..,"exporter_type":..,"port":N,"metrics_path":..,"labels":{..},"status":..,
 * "last_seen":".."} exactly as Go writes types.Node. Labels sorted by key, one per key (the
 * first occurrence wins), {} when there are none; NULL strings written as ""; last_seen_ns 0
 * written as Go's zero time "0001-01-01T00:00:00Z". malloc'd; NULL on ENOMEM. */
char *etcdreg__node_encode(const etcdreg_node_t *n);

/* {"name":..,"spec":{"username":..,"password":..[,"common_labels":{..}]},"created":".."}
 * exactly as Go writes types.ServiceGroupData (common_labels omitted when empty; created_ns 0
 * written as Go's zero time). `spec` may be NULL (empty spec). malloc'd; NULL on ENOMEM. */
char *etcdreg__group_encode(const char *name, const etcdreg_group_spec_t *spec, int64_t created_ns);

/* Decode as Go's encoding/json does into types.Node / types.ServiceGroupData: unknown fields
 * ignored; field names matched case-insensitively (Go's folding, so "ID" and "Exporter_Type"
 * match); missing fields and null leave zero values; a repeated field is applied in order
 * (labels accumulate, as Go reuses the map; null resets them); a type mismatch, a port that
 * is not a JSON integer, an invalid time, text that is not JSON or not an object:
 * ETCDREG_EDECODE with the message. Also ETCDREG_EDECODE: a used string containing U+0000 or
 * a port outside the C int range (not representable here). ETCDREG_ENOMEM on allocation
 * failure. Strings (never NULL: "" when absent) and labels (sorted by key, one per key, NULL
 * when none) live in the arena. `out` is fully overwritten (group: mod_revision = 0). */
int etcdreg__node_decode(etcdreg_arena_t *a, const char *json, size_t len, etcdreg_node_t *out,
                         char *err, size_t errlen);
int etcdreg__group_decode(etcdreg_arena_t *a, const char *json, size_t len, etcdreg_group_t *out,
                          char *err, size_t errlen);

#endif
