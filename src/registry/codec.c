/* codec: keys, validation, labels, times and JSON of the registry (see codec.h). */
#include "codec.h"

#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------------------------- */

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

static void clear_err(char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
}

static const char *nz(const char *s) { return s ? s : ""; }

/* Growable byte buffer; `oom` is sticky. */
typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) {
      if (cap > SIZE_MAX / 2) {
        b->oom = 1;
        return;
      }
      cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_puts(sbuf_t *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_putc(sbuf_t *b, char c) { sb_put(b, &c, 1); }

/* malloc'd or NULL; frees the buffer on failure. */
static char *sb_take(sbuf_t *b) {
  if (b->oom || !b->p) {
    free(b->p);
    b->p = NULL;
    return NULL;
  }
  char *p = b->p;
  b->p = NULL;
  return p;
}

/* Decodes one UTF-8 sequence as Go's utf8.DecodeRune does: returns the code point and sets
 * *size, or returns -1 with *size = 1 for an invalid or truncated sequence (overlong forms,
 * surrogates and values above U+10FFFF are invalid). */
static long utf8_decode(const unsigned char *s, size_t n, size_t *size) {
  *size = 1;
  if (n == 0) return -1;
  unsigned c = s[0];
  if (c < 0x80) return (long)c;
  unsigned lo = 0x80, hi = 0xBF;
  size_t need;
  long r;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
    r = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    r = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    r = c & 0x07;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  if (n < need) return -1;
  if (s[1] < lo || s[1] > hi) return -1;
  r = (r << 6) | (s[1] & 0x3F);
  for (size_t i = 2; i < need; i++) {
    if (s[i] < 0x80 || s[i] > 0xBF) return -1;
    r = (r << 6) | (s[i] & 0x3F);
  }
  *size = need;
  return r;
}

static const char hexdig[] = "0123456789abcdef";

/* A JSON string exactly as Go's encoding/json writes it (HTML escaping on, the default). */
static void go_json_string(sbuf_t *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  sb_putc(b, '"');
  size_t start = 0, i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) {
      if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
        i++;
        continue;
      }
      sb_put(b, str + start, i - start);
      char esc[6];
      switch (c) {
      case '"':
      case '\\':
        esc[0] = '\\';
        esc[1] = (char)c;
        sb_put(b, esc, 2);
        break;
      /* Go >= 1.22 writes \b and \f (older releases wrote \u0008 and \u000c). */
      case '\b': sb_put(b, "\\b", 2); break;
      case '\f': sb_put(b, "\\f", 2); break;
      case '\n': sb_put(b, "\\n", 2); break;
      case '\r': sb_put(b, "\\r", 2); break;
      case '\t': sb_put(b, "\\t", 2); break;
      default: /* other controls, and < > & */
        esc[0] = '\\';
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hexdig[c >> 4];
        esc[5] = hexdig[c & 0xF];
        sb_put(b, esc, 6);
        break;
      }
      i++;
      start = i;
      continue;
    }
    size_t size;
    long r = utf8_decode(s + i, n - i, &size);
    if (r < 0) {
      sb_put(b, str + start, i - start);
      sb_put(b, "\\ufffd", 6);
      i += 1;
      start = i;
      continue;
    }
    if (r == 0x2028 || r == 0x2029) {
      sb_put(b, str + start, i - start);
      sb_put(b, r == 0x2028 ? "\\u2028" : "\\u2029", 6);
      i += size;
      start = i;
      continue;
    }
    i += size;
  }
  sb_put(b, str + start, n - start);
  sb_putc(b, '"');
}

/* Approximation of Go's unicode.IsPrint for code points >= 0x80 (the exact rule needs the
 * Unicode tables): everything is printable except C1 controls, non-ASCII spaces, format
 * characters, separators, private use and noncharacters. Unassigned code points are
 * treated as printable (Go would escape them). */
static int go_isprint_nonascii(long r) {
  if (r >= 0x80 && r <= 0xA0) return 0;
  if (r == 0xAD || r == 0x061C || r == 0x1680 || r == 0x180E) return 0;
  if (r >= 0x2000 && r <= 0x200F) return 0;
  if (r >= 0x2028 && r <= 0x202F) return 0;
  if (r >= 0x205F && r <= 0x206F) return 0;
  if (r == 0x3000 || r == 0xFEFF) return 0;
  if (r >= 0xE000 && r <= 0xF8FF) return 0;
  if (r >= 0xFFF9 && r <= 0xFFFB) return 0;
  if ((r & 0xFFFE) == 0xFFFE) return 0;
  if (r >= 0xF0000) return 0;
  return 1;
}

/* Go's strconv.Quote (what %q does for a string). */
static void go_quote(sbuf_t *b, const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  size_t n = strlen(str);
  sb_putc(b, '"');
  for (size_t i = 0; i < n;) {
    size_t size;
    long r = utf8_decode(s + i, n - i, &size);
    char tmp[24];
    if (r < 0) {
      snprintf(tmp, sizeof(tmp), "\\x%c%c", hexdig[s[i] >> 4], hexdig[s[i] & 0xF]);
      sb_puts(b, tmp);
      i += 1;
      continue;
    }
    if (r == '"' || r == '\\') {
      sb_putc(b, '\\');
      sb_putc(b, (char)r);
    } else if ((r >= 0x20 && r < 0x7F) || (r >= 0x80 && go_isprint_nonascii(r))) {
      sb_put(b, str + i, size);
    } else {
      switch (r) {
      case '\a': sb_puts(b, "\\a"); break;
      case '\b': sb_puts(b, "\\b"); break;
      case '\f': sb_puts(b, "\\f"); break;
      case '\n': sb_puts(b, "\\n"); break;
      case '\r': sb_puts(b, "\\r"); break;
      case '\t': sb_puts(b, "\\t"); break;
      case '\v': sb_puts(b, "\\v"); break;
      default:
        if (r < 0x20 || r == 0x7F)
          snprintf(tmp, sizeof(tmp), "\\x%c%c", hexdig[(r >> 4) & 0xF], hexdig[r & 0xF]);
        else if (r < 0x10000)
          snprintf(tmp, sizeof(tmp), "\\u%04lx", (unsigned long)r);
        else
          snprintf(tmp, sizeof(tmp), "\\U%08lx", (unsigned long)r);
        sb_puts(b, tmp);
        break;
      }
    }
    i += size;
  }
  sb_putc(b, '"');
}

/* ------------------------------------------------------------------------------------------
 * base path and keys
 * ---------------------------------------------------------------------------------------- */

/* Go's unicode.IsSpace at s, as strings.TrimSpace uses it; returns the sequence length or 0. */
static size_t go_space_len(const unsigned char *s, size_t n) {
  if (!n) return 0;
  if (s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r')) return 1;
  size_t size;
  long r = utf8_decode(s, n, &size);
  if (r == 0x85 || r == 0xA0 || r == 0x1680 || (r >= 0x2000 && r <= 0x200A) || r == 0x2028 ||
      r == 0x2029 || r == 0x202F || r == 0x205F || r == 0x3000)
    return size;
  return 0;
}

static int all_space(const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  size_t n = strlen(str), i = 0;
  while (i < n) {
    size_t k = go_space_len(s + i, n - i);
    if (!k) return 0;
    i += k;
  }
  return 1;
}

int etcdreg__base_clean(const char *base, char **out, char *err, size_t errlen) {
  clear_err(err, errlen);
  if (!out) return fail(err, errlen, ETCDREG_EINVAL, "invalid argument: no output");
  *out = NULL;
  if (!base || all_space(base)) return fail(err, errlen, ETCDREG_EINVAL, "etcd base path cannot be empty");
  size_t n = strlen(base);
  char *buf = malloc(n + 2);
  if (!buf) return fail(err, errlen, ETCDREG_ENOMEM, "out of memory");
  /* Go's path.Clean. */
  int rooted = base[0] == '/';
  size_t w = 0, r = 0, dotdot = 0;
  if (rooted) {
    buf[w++] = '/';
    r = 1;
    dotdot = 1;
  }
  while (r < n) {
    if (base[r] == '/') {
      r++;
    } else if (base[r] == '.' && (r + 1 == n || base[r + 1] == '/')) {
      r++;
    } else if (base[r] == '.' && base[r + 1] == '.' && (r + 2 == n || base[r + 2] == '/')) {
      r += 2;
      if (w > dotdot) {
        w--;
        while (w > dotdot && buf[w] != '/') w--;
      } else if (!rooted) {
        if (w > 0) buf[w++] = '/';
        buf[w++] = '.';
        buf[w++] = '.';
        dotdot = w;
      }
    } else {
      if ((rooted && w != 1) || (!rooted && w != 0)) buf[w++] = '/';
      for (; r < n && base[r] != '/'; r++) buf[w++] = base[r];
    }
  }
  if (w == 0) buf[w++] = '.';
  buf[w] = '\0';
  if (strcmp(buf, "/") == 0 || strcmp(buf, ".") == 0) {
    free(buf);
    return fail(err, errlen, ETCDREG_EINVAL, "etcd base path cannot be the root");
  }
  *out = buf;
  return 0;
}

/* Concatenates up to 8 strings (NULL counts as ""). */
static char *concat(size_t count, const char *const *parts) {
  size_t len = 0;
  for (size_t i = 0; i < count; i++) len += strlen(nz(parts[i]));
  char *s = malloc(len + 1);
  if (!s) return NULL;
  size_t w = 0;
  for (size_t i = 0; i < count; i++) {
    size_t l = strlen(nz(parts[i]));
    memcpy(s + w, nz(parts[i]), l);
    w += l;
  }
  s[w] = '\0';
  return s;
}

char *etcdreg__group_key(const char *base, const char *group) {
  const char *p[] = {base, "/", group};
  return concat(3, p);
}

char *etcdreg__group_prefix(const char *base, const char *group) {
  const char *p[] = {base, "/", group, "/"};
  return concat(4, p);
}

char *etcdreg__nodes_prefix(const char *base, const char *group) {
  const char *p[] = {base, "/", group, "/nodes/"};
  return concat(4, p);
}

char *etcdreg__node_key(const char *base, const char *group, const char *id, const char *exporter_type) {
  const char *p[] = {base, "/", group, "/nodes/", id, "_", exporter_type};
  return concat(7, p);
}

char *etcdreg__base_prefix(const char *base) {
  const char *p[] = {base, "/"};
  return concat(2, p);
}

/* ------------------------------------------------------------------------------------------
 * labels: stable sort by key
 * ---------------------------------------------------------------------------------------- */

typedef struct {
  const char *k;
  const char *v;
  size_t rank; /* tie-break: source list, then position */
} lab_ref_t;

static int lab_ref_cmp(const void *pa, const void *pb) {
  const lab_ref_t *a = pa, *b = pb;
  int c = strcmp(a->k, b->k); /* strcmp compares as unsigned char: bytewise */
  if (c) return c;
  return a->rank < b->rank ? -1 : a->rank > b->rank;
}

/* Sorted references to the n + m labels (NULL key/value as ""); malloc'd, NULL on ENOMEM
 * (or when n + m == 0, with *ok = 1). */
static lab_ref_t *lab_refs(const etcdreg_label_t *l1, size_t n, const etcdreg_label_t *l2, size_t m, int *ok) {
  *ok = 1;
  if (n + m == 0) return NULL;
  if (n + m < n || n + m > SIZE_MAX / sizeof(lab_ref_t)) {
    *ok = 0;
    return NULL;
  }
  lab_ref_t *refs = malloc((n + m) * sizeof(*refs));
  if (!refs) {
    *ok = 0;
    return NULL;
  }
  for (size_t i = 0; i < n; i++) refs[i] = (lab_ref_t){nz(l1[i].key), nz(l1[i].value), i};
  for (size_t i = 0; i < m; i++) refs[n + i] = (lab_ref_t){nz(l2[i].key), nz(l2[i].value), n + i};
  qsort(refs, n + m, sizeof(*refs), lab_ref_cmp);
  return refs;
}

static const char *arena_str(etcdreg_arena_t *a, const char *s) {
  return etcdreg_arena_dup(a, s, strlen(s) + 1);
}

int etcdreg__labels_sort_copy(etcdreg_arena_t *a, const etcdreg_label_t *labels, size_t n, etcdreg_label_t **out) {
  *out = NULL;
  if (n == 0) return 0;
  if (!labels) return ETCDREG_EINVAL;
  int ok;
  lab_ref_t *refs = lab_refs(labels, n, NULL, 0, &ok);
  if (!refs) return ETCDREG_ENOMEM;
  etcdreg_label_t *res = ETCDREG_ARENA_NEW(a, etcdreg_label_t, n);
  for (size_t i = 0; res && i < n; i++) {
    res[i].key = arena_str(a, refs[i].k);
    res[i].value = arena_str(a, refs[i].v);
  }
  free(refs);
  if (!res || a->failed) return ETCDREG_ENOMEM;
  *out = res;
  return 0;
}

int etcdreg__labels_merge(etcdreg_arena_t *a, const etcdreg_label_t *node_labels, size_t n,
                          const etcdreg_label_t *common, size_t m, etcdreg_label_t **out, size_t *out_n) {
  *out = NULL;
  *out_n = 0;
  if (!node_labels) n = 0;
  if (!common) m = 0;
  if (n + m == 0) return 0;
  int ok;
  lab_ref_t *refs = lab_refs(node_labels, n, common, m, &ok);
  if (!refs) return ETCDREG_ENOMEM;
  size_t uniq = 0;
  for (size_t i = 0; i < n + m; i++)
    if (i == 0 || strcmp(refs[i].k, refs[i - 1].k) != 0) uniq++;
  etcdreg_label_t *res = ETCDREG_ARENA_NEW(a, etcdreg_label_t, uniq);
  size_t w = 0;
  for (size_t i = 0; res && i < n + m; i++) {
    if (i > 0 && strcmp(refs[i].k, refs[i - 1].k) == 0) continue; /* first (node) wins */
    res[w].key = arena_str(a, refs[i].k);
    res[w].value = arena_str(a, refs[i].v);
    w++;
  }
  free(refs);
  if (!res || a->failed) return ETCDREG_ENOMEM;
  *out = res;
  *out_n = w;
  return 0;
}

/* ------------------------------------------------------------------------------------------
 * validation
 * ---------------------------------------------------------------------------------------- */

static int is_name_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

int etcdreg__validate_group_name(const char *name, char *err, size_t errlen) {
  clear_err(err, errlen);
  name = nz(name);
  if (!name[0]) return fail(err, errlen, ETCDREG_EINVAL, "group name cannot be empty");
  if (strpbrk(name, "/\\?#[] "))
    return fail(err, errlen, ETCDREG_EINVAL, "invalid group name: must not contain spaces or special characters /\\?#[]");
  if (strlen(name) > 63) return fail(err, errlen, ETCDREG_EINVAL, "group name must be 63 characters or less");
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    if (!is_name_char(*p))
      return fail(err, errlen, ETCDREG_EINVAL,
                  "group name must contain only alphanumeric characters, hyphens and underscores");
  return 0;
}

static int bad_segment(const char *s) { return strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, ".."); }

int etcdreg__validate_node(const etcdreg_node_t *n, uint64_t ttl_ms, char *err, size_t errlen) {
  clear_err(err, errlen);
  if (!n) return fail(err, errlen, ETCDREG_EINVAL, "node must not be NULL");
  const char *id = nz(n->id), *exp = nz(n->exporter_type);
  if (!id[0]) return fail(err, errlen, ETCDREG_EINVAL, "node ID must be non empty");
  if (!exp[0]) return fail(err, errlen, ETCDREG_EINVAL, "exporter type must be non empty");
  if (bad_segment(id)) return fail(err, errlen, ETCDREG_EINVAL, "node ID must not contain '/' or be '.' or '..'");
  if (bad_segment(exp))
    return fail(err, errlen, ETCDREG_EINVAL, "exporter type must not contain '/' or be '.' or '..'");
  if (n->port <= 0) return fail(err, errlen, ETCDREG_EINVAL, "port must be > 0");
  if (n->port > 65535) return fail(err, errlen, ETCDREG_EINVAL, "port must be <= 65535");
  if (!nz(n->metrics_path)[0]) return fail(err, errlen, ETCDREG_EINVAL, "metrics path must be non empty");
  if (ttl_ms == 0) return fail(err, errlen, ETCDREG_EINVAL, "ttl must be > 0");
  if (n->label_count == 0) return 0;
  if (!n->labels) return fail(err, errlen, ETCDREG_EINVAL, "labels must not be NULL when label_count > 0");
  int ok;
  lab_ref_t *refs = lab_refs(n->labels, n->label_count, NULL, 0, &ok);
  if (!refs) return fail(err, errlen, ETCDREG_ENOMEM, "out of memory");
  int rv = 0;
  for (size_t i = 0; i < n->label_count && !rv; i++) {
    const char *k = refs[i].k;
    if (!k[0])
      rv = fail(err, errlen, ETCDREG_EINVAL, "empty label key not allowed");
    else if (!refs[i].v[0])
      rv = fail(err, errlen, ETCDREG_EINVAL, "empty label value not allowed for key: %s", k);
    else if (strchr(k, '='))
      rv = fail(err, errlen, ETCDREG_EINVAL, "label key cannot contain '=': %s", k);
    else if (i > 0 && strcmp(k, refs[i - 1].k) == 0)
      rv = fail(err, errlen, ETCDREG_EINVAL, "duplicate label key: %s", k);
  }
  free(refs);
  return rv;
}

/* ETCDREG_EINVAL with "<pre><s Go-quoted><post>". */
static int fail_quoted(char *err, size_t errlen, const char *pre, const char *s, const char *post) {
  sbuf_t b = {0};
  go_quote(&b, s);
  int rv = b.oom ? fail(err, errlen, ETCDREG_ENOMEM, "out of memory")
                 : fail(err, errlen, ETCDREG_EINVAL, "%s%s%s", pre, b.p, post);
  free(b.p);
  return rv;
}

int etcdreg__validate_common_labels(const etcdreg_label_t *l, size_t n, char *err, size_t errlen) {
  clear_err(err, errlen);
  if (n == 0) return 0;
  if (!l) return fail(err, errlen, ETCDREG_EINVAL, "common labels must not be NULL when the count is > 0");
  int ok;
  lab_ref_t *refs = lab_refs(l, n, NULL, 0, &ok);
  if (!refs) return fail(err, errlen, ETCDREG_ENOMEM, "out of memory");
  int rv = 0;
  for (size_t i = 0; i < n && !rv; i++) {
    const char *k = refs[i].k;
    if (!k[0])
      rv = fail(err, errlen, ETCDREG_EINVAL, "empty label key not allowed in CommonLabels");
    else if (!refs[i].v[0])
      rv = fail_quoted(err, errlen, "empty label value not allowed for key ", k, " in CommonLabels");
    else if (strchr(k, '='))
      rv = fail_quoted(err, errlen, "label key cannot contain '=' in CommonLabels: ", k, "");
    else if (i > 0 && strcmp(k, refs[i - 1].k) == 0)
      rv = fail_quoted(err, errlen, "duplicate label key in CommonLabels: ", k, "");
  }
  free(refs);
  return rv;
}

/* ------------------------------------------------------------------------------------------
 * times (proleptic Gregorian arithmetic, no time zone database)
 * ---------------------------------------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

#define NS_PER_S INT64_C(1000000000)
/* 0001-01-01T00:00:00Z in unix seconds: Go's zero time. */
#define GO_ZERO_UNIX INT64_C(-62135596800)

size_t etcdreg__time_format(int64_t unix_ns, char *buf) {
  int64_t sec = unix_ns / NS_PER_S, nsec = unix_ns % NS_PER_S;
  if (nsec < 0) {
    nsec += NS_PER_S;
    sec -= 1;
  }
  int64_t days = sec / 86400, sod = sec % 86400;
  if (sod < 0) {
    sod += 86400;
    days -= 1;
  }
  int64_t y;
  unsigned mo, d;
  civil_from_days(days, &y, &mo, &d);
  int len = snprintf(buf, ETCDREG__TIME_BUF, "%04lld-%02u-%02uT%02d:%02d:%02d", (long long)y, mo, d,
                     (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60));
  if (len < 0) len = 0;
  size_t w = (size_t)len;
  if (nsec) {
    char frac[10];
    snprintf(frac, sizeof(frac), "%09lld", (long long)nsec);
    size_t fl = 9;
    while (fl > 0 && frac[fl - 1] == '0') fl--;
    buf[w++] = '.';
    memcpy(buf + w, frac, fl);
    w += fl;
  }
  buf[w++] = 'Z';
  buf[w] = '\0';
  return w;
}

/* Go's time.Time JSON form of unix_ns (0 -> the zero time). */
static size_t go_time(int64_t unix_ns, char *buf) {
  if (unix_ns == 0) {
    memcpy(buf, "0001-01-01T00:00:00Z", 21);
    return 20;
  }
  return etcdreg__time_format(unix_ns, buf);
}

/* Digits s[0..n) as a number in [min, max], else -1. */
static int num_in(const char *s, size_t n, int min, int max) {
  int x = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    x = x * 10 + (s[i] - '0');
  }
  return x < min || x > max ? -1 : x;
}

static int is_leap(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

int etcdreg__time_parse(const char *s, int64_t *unix_ns) {
  if (!s || !unix_ns) return ETCDREG_EDECODE;
  size_t n = strlen(s);
  if (n < 19) return ETCDREG_EDECODE;
  if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':') return ETCDREG_EDECODE;
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int year = num_in(s, 4, 0, 9999);
  int month = num_in(s + 5, 2, 1, 12);
  if (year < 0 || month < 0) return ETCDREG_EDECODE;
  int dim = mdays[month - 1] + (month == 2 && is_leap(year));
  int day = num_in(s + 8, 2, 1, dim);
  int hour = num_in(s + 11, 2, 0, 23);
  int min = num_in(s + 14, 2, 0, 59);
  int sec = num_in(s + 17, 2, 0, 59);
  if (day < 0 || hour < 0 || min < 0 || sec < 0) return ETCDREG_EDECODE;
  const char *p = s + 19;
  int64_t nsec = 0;
  if (p[0] == '.' && p[1] >= '0' && p[1] <= '9') {
    size_t k = 1;
    int64_t scale = NS_PER_S;
    for (; p[k] >= '0' && p[k] <= '9'; k++) {
      if (k <= 9) {
        scale /= 10;
        nsec += (p[k] - '0') * scale;
      } /* digits past the 9th are ignored, as Go does */
    }
    p += k;
  }
  int64_t offset = 0;
  if (!(p[0] == 'Z' && p[1] == '\0')) {
    if (strlen(p) != 6 || (p[0] != '+' && p[0] != '-') || p[3] != ':') return ETCDREG_EDECODE;
    int oh = num_in(p + 1, 2, 0, 23), om = num_in(p + 4, 2, 0, 59);
    if (oh < 0 || om < 0) return ETCDREG_EDECODE;
    offset = ((int64_t)oh * 60 + om) * 60;
    if (p[0] == '-') offset = -offset;
  }
  int64_t secs = days_from_civil(year, (unsigned)month, (unsigned)day) * 86400 + hour * 3600 + min * 60 + sec - offset;
  if (secs == GO_ZERO_UNIX && nsec == 0) {
    *unix_ns = 0;
    return 0;
  }
  /* INT64 range: [-9223372036.854775808 s, 9223372036.854775807 s] */
  if (secs > INT64_C(9223372036) || secs < INT64_C(-9223372037)) return ETCDREG_EDECODE;
  if (secs == INT64_C(9223372036) && nsec > INT64_C(854775807)) return ETCDREG_EDECODE;
  if (secs == INT64_C(-9223372037)) {
    if (nsec < INT64_C(145224192)) return ETCDREG_EDECODE;
    *unix_ns = (secs + 1) * NS_PER_S + (nsec - NS_PER_S);
    return 0;
  }
  *unix_ns = secs * NS_PER_S + nsec;
  return 0;
}

/* ------------------------------------------------------------------------------------------
 * JSON encoding: the structure is built with jansson, then written with Go's formatting
 * (jansson's own dump escapes differently: no \u003c, uppercase hex, no \ufffd).
 * ---------------------------------------------------------------------------------------- */

/* Objects are written in jansson's iteration order, which is insertion order: struct fields
 * in declaration order, map keys inserted sorted. */
static void go_json_value(sbuf_t *b, json_t *v) {
  char num[32];
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    sb_putc(b, '{');
    int first = 1;
    for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
      if (!first) sb_putc(b, ',');
      first = 0;
      go_json_string(b, json_object_iter_key(it), json_object_iter_key_len(it));
      sb_putc(b, ':');
      go_json_value(b, json_object_iter_value(it));
    }
    sb_putc(b, '}');
    break;
  }
  case JSON_ARRAY:
    sb_putc(b, '[');
    for (size_t i = 0; i < json_array_size(v); i++) {
      if (i) sb_putc(b, ',');
      go_json_value(b, json_array_get(v, i));
    }
    sb_putc(b, ']');
    break;
  case JSON_STRING: go_json_string(b, json_string_value(v), json_string_length(v)); break;
  case JSON_INTEGER:
    snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    sb_puts(b, num);
    break;
  case JSON_TRUE: sb_puts(b, "true"); break;
  case JSON_FALSE: sb_puts(b, "false"); break;
  case JSON_NULL: sb_puts(b, "null"); break;
  default: b->oom = 1; break; /* reals are never built here */
  }
}

static json_t *jstr(const char *s) {
  s = nz(s);
  return json_stringn_nocheck(s, strlen(s));
}

static void jset(json_t *o, const char *key, json_t *v, int *bad) {
  if (!o || !v || json_object_set_new_nocheck(o, key, v)) *bad = 1; /* jansson frees v on failure */
}

/* Labels as a map: keys sorted, one per key (first occurrence wins). */
static json_t *jlabels(const etcdreg_label_t *l, size_t n) {
  json_t *o = json_object();
  if (!o) return NULL;
  if (!l || n == 0) return o;
  int ok, bad = 0;
  lab_ref_t *refs = lab_refs(l, n, NULL, 0, &ok);
  if (!refs) bad = 1;
  for (size_t i = 0; refs && i < n && !bad; i++) {
    if (i > 0 && strcmp(refs[i].k, refs[i - 1].k) == 0) continue;
    jset(o, refs[i].k, jstr(refs[i].v), &bad);
  }
  free(refs);
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

static char *dump_go(json_t *root, int bad) {
  if (!root || bad) {
    json_decref(root);
    return NULL;
  }
  sbuf_t b = {0};
  go_json_value(&b, root);
  json_decref(root);
  return sb_take(&b);
}

char *etcdreg__node_encode(const etcdreg_node_t *n) {
  if (!n) return NULL;
  char t[ETCDREG__TIME_BUF];
  go_time(n->last_seen_ns, t);
  int bad = 0;
  json_t *o = json_object();
  jset(o, "id", jstr(n->id), &bad);
  jset(o, "exporter_type", jstr(n->exporter_type), &bad);
  jset(o, "port", json_integer(n->port), &bad);
  jset(o, "metrics_path", jstr(n->metrics_path), &bad);
  jset(o, "labels", jlabels(n->labels, n->label_count), &bad);
  jset(o, "status", jstr(n->status), &bad);
  jset(o, "last_seen", jstr(t), &bad);
  return dump_go(o, bad);
}

char *etcdreg__group_encode(const char *name, const etcdreg_group_spec_t *spec, int64_t created_ns) {
  static const etcdreg_group_spec_t empty = {NULL, NULL, NULL, 0};
  if (!spec) spec = &empty;
  char t[ETCDREG__TIME_BUF];
  go_time(created_ns, t);
  int bad = 0;
  json_t *o = json_object();
  json_t *s = json_object();
  jset(o, "name", jstr(name), &bad);
  jset(s, "username", jstr(spec->username), &bad);
  jset(s, "password", jstr(spec->password), &bad);
  if (spec->common_labels && spec->common_label_count) /* omitempty */
    jset(s, "common_labels", jlabels(spec->common_labels, spec->common_label_count), &bad);
  jset(o, "spec", s, &bad);
  jset(o, "created", jstr(t), &bad);
  return dump_go(o, bad);
}

/* ------------------------------------------------------------------------------------------
 * JSON decoding, lenient as Go's encoding/json
 * ---------------------------------------------------------------------------------------- */

typedef struct {
  etcdreg_arena_t *a;
  char *err;
  size_t errlen;
  const char *type; /* Go type name for messages: "Node", "ServiceGroupData" */
} dec_t;

/* Go's case folding of a JSON key against a lowercase ASCII field name: ASCII letters
 * case-insensitively, plus U+017F (long s) ~ 's' and U+212A (Kelvin sign) ~ 'k'. */
static int fold_eq(const char *key, size_t klen, const char *field) {
  const unsigned char *k = (const unsigned char *)key;
  size_t i = 0;
  for (const char *f = field; *f; f++) {
    if (i >= klen) return 0;
    unsigned c = k[i];
    if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
    if (c == (unsigned char)*f) {
      i++;
    } else if (*f == 's' && i + 1 < klen && k[i] == 0xC5 && k[i + 1] == 0xBF) {
      i += 2;
    } else if (*f == 'k' && i + 2 < klen && k[i] == 0xE2 && k[i + 1] == 0x84 && k[i + 2] == 0xAA) {
      i += 3;
    } else {
      return 0;
    }
  }
  return i == klen;
}

static const char *kind_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "object";
  case JSON_ARRAY: return "array";
  case JSON_STRING: return "string";
  case JSON_INTEGER:
  case JSON_REAL: return "number";
  case JSON_TRUE:
  case JSON_FALSE: return "bool";
  default: return "null";
  }
}

static int type_error(dec_t *d, const json_t *v, const char *field, const char *gotype) {
  if (json_is_real(v))
    return fail(d->err, d->errlen, ETCDREG_EDECODE,
                "json: cannot unmarshal number %g into Go struct field %s.%s of type %s", json_real_value(v), d->type,
                field, gotype);
  return fail(d->err, d->errlen, ETCDREG_EDECODE, "json: cannot unmarshal %s into Go struct field %s.%s of type %s",
              kind_name(v), d->type, field, gotype);
}

static int dec_string(dec_t *d, json_t *v, const char *field, const char **out) {
  if (json_is_null(v)) return 0; /* Go: null leaves the field as it is */
  if (!json_is_string(v)) return type_error(d, v, field, "string");
  const char *s = json_string_value(v);
  size_t len = json_string_length(v);
  if (strlen(s) != len)
    return fail(d->err, d->errlen, ETCDREG_EDECODE, "field %s.%s: string contains U+0000 (not representable)",
                d->type, field);
  const char *c = etcdreg_arena_dup(d->a, s, len + 1);
  if (!c) return fail(d->err, d->errlen, ETCDREG_ENOMEM, "out of memory");
  *out = c;
  return 0;
}

static int dec_int(dec_t *d, json_t *v, const char *field, int *out) {
  if (json_is_null(v)) return 0;
  if (!json_is_integer(v)) return type_error(d, v, field, "int");
  json_int_t x = json_integer_value(v);
  if (x < INT_MIN || x > INT_MAX)
    return fail(d->err, d->errlen, ETCDREG_EDECODE, "field %s.%s: %" JSON_INTEGER_FORMAT " is out of range", d->type,
                field, x);
  *out = (int)x;
  return 0;
}

static int dec_time(dec_t *d, json_t *v, const char *field, int64_t *out) {
  (void)field;
  if (json_is_null(v)) return 0; /* Go's Time.UnmarshalJSON: null is a no-op */
  if (!json_is_string(v))
    return fail(d->err, d->errlen, ETCDREG_EDECODE, "Time.UnmarshalJSON: input is not a JSON string");
  const char *s = json_string_value(v);
  if (strlen(s) != json_string_length(v) || etcdreg__time_parse(s, out))
    return fail(d->err, d->errlen, ETCDREG_EDECODE,
                "parsing time \"%s\" as \"2006-01-02T15:04:05Z07:00\": not RFC 3339 or out of range", s);
  return 0;
}

/* A map[string]string being decoded: Go reuses the map across repeated fields (entries
 * accumulate, a repeated key is replaced) and null resets it to nil. Strings point into the
 * jansson tree until lacc_finish copies them. */
typedef struct {
  lab_ref_t *v;
  size_t n, cap;
} lacc_t;

static int lacc_set(lacc_t *l, const char *k, const char *v, int search) {
  if (search)
    for (size_t i = 0; i < l->n; i++)
      if (strcmp(l->v[i].k, k) == 0) {
        l->v[i].v = v;
        return 0;
      }
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    lab_ref_t *nv = realloc(l->v, cap * sizeof(*nv));
    if (!nv) return -1;
    l->v = nv;
    l->cap = cap;
  }
  l->v[l->n] = (lab_ref_t){k, v, l->n};
  l->n++;
  return 0;
}

static int dec_labels(dec_t *d, json_t *v, const char *field, lacc_t *l) {
  if (json_is_null(v)) {
    l->n = 0;
    return 0;
  }
  if (!json_is_object(v)) return type_error(d, v, field, "map[string]string");
  int search = l->n > 0;
  const char *k;
  size_t klen;
  json_t *val;
  json_object_keylen_foreach(v, k, klen, val) {
    if (strlen(k) != klen)
      return fail(d->err, d->errlen, ETCDREG_EDECODE, "field %s.%s: label key contains U+0000 (not representable)",
                  d->type, field);
    const char *s = "";
    if (json_is_string(val)) {
      s = json_string_value(val);
      if (strlen(s) != json_string_length(val))
        return fail(d->err, d->errlen, ETCDREG_EDECODE,
                    "field %s.%s: value of label \"%s\" contains U+0000 (not representable)", d->type, field, k);
    } else if (!json_is_null(val)) { /* Go stores "" for a null element */
      return type_error(d, val, field, "string");
    }
    if (lacc_set(l, k, s, search)) return fail(d->err, d->errlen, ETCDREG_ENOMEM, "out of memory");
  }
  return 0;
}

static int lacc_finish(dec_t *d, lacc_t *l, const etcdreg_label_t **out, size_t *count) {
  *out = NULL;
  *count = 0;
  if (l->n == 0) return 0;
  qsort(l->v, l->n, sizeof(*l->v), lab_ref_cmp);
  etcdreg_label_t *res = ETCDREG_ARENA_NEW(d->a, etcdreg_label_t, l->n);
  for (size_t i = 0; res && i < l->n; i++) {
    res[i].key = arena_str(d->a, l->v[i].k);
    res[i].value = arena_str(d->a, l->v[i].v);
  }
  if (!res || d->a->failed) return fail(d->err, d->errlen, ETCDREG_ENOMEM, "out of memory");
  *out = res;
  *count = l->n;
  return 0;
}

static json_t *dec_load(dec_t *d, const char *json, size_t len, const char *gotype, int *rv) {
  json_error_t je;
  if (!json) {
    *rv = fail(d->err, d->errlen, ETCDREG_EDECODE, "invalid JSON: no input");
    return NULL;
  }
  json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &je);
  if (!root) {
    *rv = fail(d->err, d->errlen, ETCDREG_EDECODE, "invalid JSON: %s (line %d, column %d)", je.text, je.line,
               je.column);
    return NULL;
  }
  if (!json_is_object(root)) { /* jansson only returns objects and arrays here */
    *rv = fail(d->err, d->errlen, ETCDREG_EDECODE, "json: cannot unmarshal %s into Go value of type %s",
               kind_name(root), gotype);
    json_decref(root);
    return NULL;
  }
  *rv = 0;
  return root;
}

int etcdreg__node_decode(etcdreg_arena_t *a, const char *json, size_t len, etcdreg_node_t *out, char *err,
                         size_t errlen) {
  clear_err(err, errlen);
  memset(out, 0, sizeof(*out));
  out->id = out->exporter_type = out->metrics_path = out->status = "";
  dec_t d = {a, err, errlen, "Node"};
  int rv;
  json_t *root = dec_load(&d, json, len, "types.Node", &rv);
  if (!root) return rv;
  lacc_t labels = {0};
  const char *k;
  size_t klen;
  json_t *v;
  json_object_keylen_foreach(root, k, klen, v) {
    if (fold_eq(k, klen, "id")) rv = dec_string(&d, v, "id", &out->id);
    else if (fold_eq(k, klen, "exporter_type")) rv = dec_string(&d, v, "exporter_type", &out->exporter_type);
    else if (fold_eq(k, klen, "port")) rv = dec_int(&d, v, "port", &out->port);
    else if (fold_eq(k, klen, "metrics_path")) rv = dec_string(&d, v, "metrics_path", &out->metrics_path);
    else if (fold_eq(k, klen, "labels")) rv = dec_labels(&d, v, "labels", &labels);
    else if (fold_eq(k, klen, "status")) rv = dec_string(&d, v, "status", &out->status);
    else if (fold_eq(k, klen, "last_seen")) rv = dec_time(&d, v, "last_seen", &out->last_seen_ns);
    if (rv) break;
  }
  if (!rv) rv = lacc_finish(&d, &labels, &out->labels, &out->label_count);
  free(labels.v);
  json_decref(root);
  return rv;
}

static int dec_spec(dec_t *d, json_t *v, etcdreg_group_spec_t *spec, lacc_t *labels) {
  if (json_is_null(v)) return 0; /* Go: null leaves a struct as it is */
  if (!json_is_object(v)) return type_error(d, v, "spec", "types.ServiceGroupSpec");
  const char *k;
  size_t klen;
  json_t *f;
  int rv = 0;
  json_object_keylen_foreach(v, k, klen, f) {
    if (fold_eq(k, klen, "username")) rv = dec_string(d, f, "spec.username", &spec->username);
    else if (fold_eq(k, klen, "password")) rv = dec_string(d, f, "spec.password", &spec->password);
    else if (fold_eq(k, klen, "common_labels")) rv = dec_labels(d, f, "spec.common_labels", labels);
    if (rv) break;
  }
  return rv;
}

int etcdreg__group_decode(etcdreg_arena_t *a, const char *json, size_t len, etcdreg_group_t *out, char *err,
                          size_t errlen) {
  clear_err(err, errlen);
  memset(out, 0, sizeof(*out));
  out->name = out->spec.username = out->spec.password = "";
  dec_t d = {a, err, errlen, "ServiceGroupData"};
  int rv;
  json_t *root = dec_load(&d, json, len, "types.ServiceGroupData", &rv);
  if (!root) return rv;
  lacc_t labels = {0};
  const char *k;
  size_t klen;
  json_t *v;
  json_object_keylen_foreach(root, k, klen, v) {
    if (fold_eq(k, klen, "name")) rv = dec_string(&d, v, "name", &out->name);
    else if (fold_eq(k, klen, "spec")) rv = dec_spec(&d, v, &out->spec, &labels);
    else if (fold_eq(k, klen, "created")) rv = dec_time(&d, v, "created", &out->created_ns);
    if (rv) break;
  }
  if (!rv) rv = lacc_finish(&d, &labels, &out->spec.common_labels, &out->spec.common_label_count);
  free(labels.v);
  json_decref(root);
  return rv;
}
