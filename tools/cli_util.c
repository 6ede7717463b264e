/* cli_util.c - parsers and formatters of the etcdreg command-line tool. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* ---- labels ---- */

int cli_labels_add(cli_labels_t *l, const char *kv, const char *opt, char *err, size_t errlen) {
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv) {
    snprintf(err, errlen, "%s expects KEY=VALUE, got '%s'", opt, kv);
    return -1;
  }
  size_t klen = (size_t)(eq - kv);
  for (size_t i = 0; i < l->count; i++) {
    if (strlen(l->items[i].key) == klen && memcmp(l->items[i].key, kv, klen) == 0) {
      snprintf(err, errlen, "%s: duplicate label key '%.*s'", opt, (int)klen, kv);
      return -1;
    }
  }
  if (l->count == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    etcdreg_label_t *n = realloc(l->items, cap * sizeof(*n));
    if (!n) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    l->items = n;
    l->cap = cap;
  }
  char *k = strndup(kv, klen), *v = strdup(eq + 1);
  if (!k || !v) {
    free(k);
    free(v);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  l->items[l->count].key = k;
  l->items[l->count].value = v;
  l->count++;
  return 0;
}

void cli_labels_free(cli_labels_t *l) {
  for (size_t i = 0; i < l->count; i++) {
    free((char *)l->items[i].key);
    free((char *)l->items[i].value);
  }
  free(l->items);
  memset(l, 0, sizeof(*l));
}

/* ---- parsers ---- */

int cli_parse_duration(const char *s, uint64_t *ms) {
  if (!s || !*s) return -1;
  uint64_t total = 0;
  const char *p = s;
  while (*p) {
    if (!isdigit((unsigned char)*p)) return -1;
    uint64_t n = 0;
    while (isdigit((unsigned char)*p)) {
      if (n > UINT64_MAX / 10 - 10) return -1;
      n = n * 10 + (uint64_t)(*p++ - '0');
    }
    uint64_t mult;
    if (strncmp(p, "ms", 2) == 0) {
      mult = 1;
      p += 2;
    } else if (*p == 's') {
      mult = 1000;
      p++;
    } else if (*p == 'm') {
      mult = 60 * 1000;
      p++;
    } else if (*p == 'h') {
      mult = 3600 * 1000;
      p++;
    } else {
      return -1; /* a unit is required */
    }
    if (n > (UINT64_MAX / 4) / mult) return -1;
    total += n * mult;
    if (total > UINT64_MAX / 4) return -1;
  }
  if (total == 0) return -1;
  *ms = total;
  return 0;
}

int cli_parse_int(const char *s, long min, long max, long *out) {
  if (!s || !*s) return -1;
  for (const char *p = s; *p; p++)
    if (!isdigit((unsigned char)*p) && !(p == s && *p == '-')) return -1;
  errno = 0;
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (errno || !end || *end || v < min || v > max) return -1;
  *out = v;
  return 0;
}

int cli_read_secret_file(const char *path, char **out, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "cannot read password file '%s': %s", path, strerror(errno));
    return -1;
  }
  size_t cap = 256, len = 0;
  char *buf = malloc(cap);
  if (!buf) {
    close(fd);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (;;) {
    if (len + 1 >= cap) {
      if (cap >= 1 << 20) {
        snprintf(err, errlen, "password file '%s' is too large", path);
        goto fail;
      }
      char *n = realloc(buf, cap * 2);
      if (!n) {
        snprintf(err, errlen, "out of memory");
        goto fail;
      }
      buf = n;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + len, cap - len - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      snprintf(err, errlen, "cannot read password file '%s': %s", path, strerror(errno));
      goto fail;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = 0;
  if (len && buf[len - 1] == '\n') buf[--len] = 0;
  if (len && buf[len - 1] == '\r') buf[--len] = 0;
  if (memchr(buf, 0, len)) {
    snprintf(err, errlen, "password file '%s' contains a NUL byte", path);
    memset(buf, 0, len);
    free(buf);
    return -1;
  }
  *out = buf;
  return 0;
fail:
  close(fd);
  memset(buf, 0, cap);
  free(buf);
  return -1;
}

/* ---- formatting ---- */

void cli_time_format(int64_t unix_ns, char *buf) {
  if (unix_ns == 0) {
    snprintf(buf, CLI_TIME_BUF, "0001-01-01T00:00:00Z");
    return;
  }
  int64_t sec = unix_ns / 1000000000, nsec = unix_ns % 1000000000;
  if (nsec < 0) {
    nsec += 1000000000;
    sec -= 1;
  }
  time_t t = (time_t)sec;
  struct tm tm;
  if (!gmtime_r(&t, &tm)) {
    snprintf(buf, CLI_TIME_BUF, "0001-01-01T00:00:00Z");
    return;
  }
  int n = snprintf(buf, CLI_TIME_BUF, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                   tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (n < 0 || n >= CLI_TIME_BUF - 12) return;
  size_t w = (size_t)n;
  if (nsec) {
    char frac[16];
    snprintf(frac, sizeof(frac), "%09lld", (long long)nsec);
    size_t fl = 9;
    while (fl > 0 && frac[fl - 1] == '0') fl--;
    buf[w++] = '.';
    memcpy(buf + w, frac, fl);
    w += fl;
  }
  buf[w++] = 'Z';
  buf[w] = 0;
}

const char *cli_label_get(const etcdreg_label_t *l, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (l[i].key && strcmp(l[i].key, key) == 0) return l[i].value ? l[i].value : "";
  return NULL;
}

const char *cli_node_host(const etcdreg_node_t *n) {
  const char *h = cli_label_get(n->labels, n->label_count, "address");
  if (h && *h) return h;
  h = cli_label_get(n->labels, n->label_count, "host");
  if (h && *h) return h;
  return n->id ? n->id : "";
}

void cli_node_hostport(const etcdreg_node_t *n, char *buf, size_t len) {
  const char *h = cli_node_host(n);
  const char *c1 = strchr(h, ':');
  int v6 = c1 && strchr(c1 + 1, ':') && h[0] != '[';
  snprintf(buf, len, v6 ? "[%s]:%d" : "%s:%d", h, n->port);
}

static json_t *jstr(const char *s) { return json_string(s ? s : ""); }

static void jset(json_t *o, const char *k, json_t *v, int *bad) {
  if (!o || !v || json_object_set_new(o, k, v)) *bad = 1;
}

static json_t *labels_json(const etcdreg_label_t *l, size_t n) {
  json_t *o = json_object();
  int bad = 0;
  for (size_t i = 0; i < n && o; i++) jset(o, l[i].key ? l[i].key : "", jstr(l[i].value), &bad);
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

json_t *cli_node_json(const etcdreg_node_t *n) {
  char t[CLI_TIME_BUF];
  cli_time_format(n->last_seen_ns, t);
  int bad = 0;
  json_t *o = json_object();
  jset(o, "id", jstr(n->id), &bad);
  jset(o, "exporter_type", jstr(n->exporter_type), &bad);
  jset(o, "port", json_integer(n->port), &bad);
  jset(o, "metrics_path", jstr(n->metrics_path), &bad);
  jset(o, "labels", labels_json(n->labels, n->label_count), &bad);
  jset(o, "status", jstr(n->status), &bad);
  jset(o, "last_seen", jstr(t), &bad);
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

json_t *cli_group_json(const etcdreg_group_t *g) {
  char t[CLI_TIME_BUF];
  cli_time_format(g->created_ns, t);
  int bad = 0;
  json_t *o = json_object(), *s = json_object();
  jset(o, "name", jstr(g->name), &bad);
  jset(s, "username", jstr(g->spec.username), &bad);
  jset(s, "password", jstr(g->spec.password && g->spec.password[0] ? "***" : ""), &bad);
  if (g->spec.common_label_count) /* omitempty, as in the Go library */
    jset(s, "common_labels", labels_json(g->spec.common_labels, g->spec.common_label_count), &bad);
  if (!bad) jset(o, "spec", s, &bad);
  else json_decref(s);
  jset(o, "created", jstr(t), &bad);
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

int cli_print_json(FILE *f, json_t *v, int compact) {
  if (!v) return -1;
  size_t flags = JSON_PRESERVE_ORDER | (compact ? JSON_COMPACT : JSON_INDENT(2));
  char *s = json_dumps(v, flags);
  json_decref(v);
  if (!s) return -1;
  fprintf(f, "%s\n", s);
  free(s);
  return 0;
}
