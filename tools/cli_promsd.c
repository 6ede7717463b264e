/* cli_promsd.c - `etcdreg prometheus-sd`: the registry as a Prometheus file_sd list.
 *
 * One read of the registry (the groups, then each group's nodes) builds the whole list,
 * sorted by group then node key. Without --out it is printed once. With --out the file is
 * written atomically (FILE.tmp, fsync, rename, fsync of the directory) once the registry
 * watch is established, and again after every batch of events (100 ms throttle; a read
 * that is running when events come is followed by another one). Failed reads and watches
 * are retried every second, so etcd restarts and outages only delay the file. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define PROMSD_THROTTLE_MS 100
#define PROMSD_RETRY_MS 1000

typedef struct {
  cli_app_t *app;
  int inited;
  char *out, *tmp;
  char **filter; /* sorted, unique; NULL when every group */
  size_t nfilter;
  /* the read in progress */
  int reading, dirty;
  char **cur;
  size_t ncur, idx;
  int cur_owned;
  json_t *arr;
  size_t targets;
  char *msgs; /* collision reports of this build, one per line */
  size_t msgs_len, msgs_cap;
  /* --out */
  char *last_msgs;
  char *last_written;
  int written_once;
  etcdreg_registry_watch_t *watch;
  uv_timer_t throttle, retry;
  int timers_on;
  int retry_watch;
} promsd_t;

static promsd_t P;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int cli_promsd_init(cli_app_t *app, const cli_promsd_args_t *args) {
  memset(&P, 0, sizeof(P));
  P.inited = 1;
  P.app = app;
  if (args->out) {
    size_t n = strlen(args->out);
    P.out = strdup(args->out);
    P.tmp = malloc(n + 5);
    if (!P.out || !P.tmp) return -1;
    memcpy(P.tmp, args->out, n);
    memcpy(P.tmp + n, ".tmp", 5);
  }
  if (args->group_count) {
    P.filter = calloc(args->group_count, sizeof(char *));
    if (!P.filter) return -1;
    for (size_t i = 0; i < args->group_count; i++)
      if (!(P.filter[i] = strdup(args->groups[i]))) return -1;
    P.nfilter = args->group_count;
    qsort(P.filter, P.nfilter, sizeof(char *), cmp_str);
    size_t w = 0;
    for (size_t i = 0; i < P.nfilter; i++) {
      if (w && strcmp(P.filter[w - 1], P.filter[i]) == 0) free(P.filter[i]);
      else P.filter[w++] = P.filter[i];
    }
    P.nfilter = w;
  }
  return 0;
}

static void free_cur(void) {
  if (P.cur_owned)
    for (size_t i = 0; i < P.ncur; i++) free(P.cur[i]);
  if (P.cur_owned) free(P.cur);
  P.cur = NULL;
  P.ncur = P.idx = 0;
  P.cur_owned = 0;
}

static void read_cleanup(void) {
  free_cur();
  json_decref(P.arr);
  P.arr = NULL;
  P.reading = 0;
}

void cli_promsd_free(cli_app_t *app) {
  (void)app;
  if (!P.inited) return;
  read_cleanup();
  for (size_t i = 0; i < P.nfilter; i++) free(P.filter[i]);
  free(P.filter);
  free(P.out);
  free(P.tmp);
  free(P.msgs);
  free(P.last_msgs);
  free(P.last_written);
  memset(&P, 0, sizeof(P));
}

static int in_filter(const char *group) {
  if (!P.filter) return 1;
  return bsearch(&group, P.filter, P.nfilter, sizeof(char *), cmp_str) != NULL;
}

static void msg_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void msg_add(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t need = P.msgs_len + (size_t)n + 2;
  if (need > P.msgs_cap) {
    size_t cap = P.msgs_cap ? P.msgs_cap : 256;
    while (cap < need) cap *= 2;
    char *m = realloc(P.msgs, cap);
    if (!m) return;
    P.msgs = m;
    P.msgs_cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(P.msgs + P.msgs_len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  P.msgs_len += (size_t)n;
  P.msgs[P.msgs_len++] = '\n';
  P.msgs[P.msgs_len] = 0;
}

/* ---- building the list ---- */

static int valid_first(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int valid_next(char c) { return valid_first(c) || (c >= '0' && c <= '9'); }

/* [a-zA-Z_][a-zA-Z0-9_]*: invalid characters -> '_', a leading digit gets a '_' prefix. */
static char *sanitize(const char *name) {
  size_t n = strlen(name);
  int prefix = n == 0 || (name[0] >= '0' && name[0] <= '9');
  char *s = malloc(n + 2);
  if (!s) return NULL;
  size_t w = 0;
  if (prefix) s[w++] = '_';
  for (size_t i = 0; i < n; i++) s[w++] = valid_next(name[i]) ? name[i] : '_';
  s[w] = 0;
  return s;
}

typedef struct {
  char *name;
  const char *value;
  const char *orig; /* NULL: reserved */
} lab_t;

static int cmp_lab(const void *a, const void *b) { return strcmp(((const lab_t *)a)->name, ((const lab_t *)b)->name); }
static int cmp_label_key(const void *a, const void *b) {
  return strcmp((*(const etcdreg_label_t *const *)a)->key, (*(const etcdreg_label_t *const *)b)->key);
}

static json_t *target_group(const char *group, const etcdreg_node_t *n) {
  size_t cap = n->label_count + 3;
  lab_t *labs = calloc(cap, sizeof(*labs));
  const etcdreg_label_t **sorted = calloc(n->label_count + 1, sizeof(*sorted));
  json_t *tg = NULL;
  size_t k = 0;
  if (!labs || !sorted) goto done;
  const char *reserved[3][2] = {{"__metrics_path__", n->metrics_path}, {"group", group}, {"exporter_type", n->exporter_type}};
  for (int i = 0; i < 3; i++) {
    if (!(labs[k].name = strdup(reserved[i][0]))) goto done;
    labs[k++].value = reserved[i][1] ? reserved[i][1] : "";
  }
  for (size_t i = 0; i < n->label_count; i++) sorted[i] = &n->labels[i];
  qsort(sorted, n->label_count, sizeof(*sorted), cmp_label_key);
  for (size_t i = 0; i < n->label_count; i++) {
    const char *key = sorted[i]->key ? sorted[i]->key : "";
    char *s = sanitize(key);
    if (!s) goto done;
    size_t j = 0;
    while (j < k && strcmp(labs[j].name, s) != 0) j++;
    if (j < k) {
      if (labs[j].orig)
        msg_add("prometheus-sd: %s %s/%s: label '%s' dropped: its name '%s' is already used by label '%s'", group,
                n->id, n->exporter_type, key, s, labs[j].orig);
      else
        msg_add("prometheus-sd: %s %s/%s: label '%s' dropped: '%s' is set by prometheus-sd", group, n->id,
                n->exporter_type, key, s);
      free(s);
      continue;
    }
    labs[k].name = s;
    labs[k].value = sorted[i]->value ? sorted[i]->value : "";
    labs[k++].orig = key;
  }
  qsort(labs, k, sizeof(*labs), cmp_lab);
  char hp[512];
  cli_node_hostport(n, hp, sizeof(hp));
  tg = json_object();
  json_t *targets = json_array(), *labels = json_object();
  int bad = !tg || !targets || !labels;
  if (!bad) bad = json_array_append_new(targets, json_string(hp));
  for (size_t i = 0; i < k && !bad; i++) bad = json_object_set_new(labels, labs[i].name, json_string(labs[i].value));
  if (!bad) bad = json_object_set_new(tg, "targets", targets);
  else json_decref(targets);
  if (!bad) bad = json_object_set_new(tg, "labels", labels);
  else json_decref(labels);
  if (bad) {
    json_decref(tg);
    tg = NULL;
  }
done:
  for (size_t i = 0; labs && i < k; i++) free(labs[i].name);
  free(labs);
  free(sorted);
  return tg;
}

/* ---- writing ---- */

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* FILE.tmp, fsync, rename over FILE, fsync the directory. 0, or -1 with errno. */
static int write_atomic(const char *text) {
  int fd = open(P.tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  if (write_all(fd, text, strlen(text)) || fsync(fd)) {
    int e = errno;
    close(fd);
    unlink(P.tmp);
    errno = e;
    return -1;
  }
  if (close(fd) || rename(P.tmp, P.out)) {
    int e = errno;
    unlink(P.tmp);
    errno = e;
    return -1;
  }
  char *copy = strdup(P.out);
  if (copy) {
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)fsync(dfd);
      close(dfd);
    }
    free(copy);
  }
  return 0;
}

/* ---- reading ---- */

static void refresh(void);

static void on_throttle(uv_timer_t *t);
static void on_retry(uv_timer_t *t);

static void schedule(uv_timer_t *t, uint64_t ms) {
  if (P.timers_on && !P.app->finishing) uv_timer_start(t, t == &P.throttle ? on_throttle : on_retry, ms, 0);
}

static void read_failed(const char *what, int status) {
  read_cleanup();
  cli_app_t *app = P.app;
  if (!P.out) {
    cli_fail(app, CLI_EXIT_FAIL, "prometheus-sd: %s: %s", what, etcdreg_strerror(status));
    return;
  }
  cli_err("prometheus-sd: %s: %s; retrying in %d ms", what, etcdreg_strerror(status), PROMSD_RETRY_MS);
  schedule(&P.retry, PROMSD_RETRY_MS);
}

static void build_done(void) {
  cli_app_t *app = P.app;
  char *text = json_dumps(P.arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  size_t targets = json_array_size(P.arr);
  read_cleanup();
  if (!text) {
    cli_fail(app, CLI_EXIT_FAIL, "out of memory");
    return;
  }
  size_t tl = strlen(text);
  char *t2 = realloc(text, tl + 2);
  if (!t2) {
    free(text);
    cli_fail(app, CLI_EXIT_FAIL, "out of memory");
    return;
  }
  text = t2;
  memcpy(text + tl, "\n", 2);
  const char *msgs = P.msgs ? P.msgs : "";
  if (!P.last_msgs || strcmp(P.last_msgs, msgs) != 0) {
    if (*msgs) {
      for (const char *p = msgs; *p;) {
        const char *e = strchr(p, '\n');
        cli_err("%.*s", (int)(e - p), p);
        p = e + 1;
      }
    }
    free(P.last_msgs);
    P.last_msgs = strdup(msgs);
  }
  if (!P.out) {
    fputs(text, stdout);
    free(text);
    if (cli_flush(app) == 0) cli_finish(app, CLI_EXIT_OK);
    return;
  }
  if (P.last_written && strcmp(P.last_written, text) == 0 && access(P.out, F_OK) == 0) {
    free(text); /* unchanged */
  } else if (write_atomic(text)) {
    int e = errno;
    free(text);
    if (!P.written_once) {
      cli_fail(app, CLI_EXIT_FAIL, "prometheus-sd: cannot write %s: %s", P.out, strerror(e));
      return;
    }
    cli_err("prometheus-sd: cannot write %s: %s; retrying in %d ms", P.out, strerror(e), PROMSD_RETRY_MS);
    schedule(&P.retry, PROMSD_RETRY_MS);
    return;
  } else {
    P.written_once = 1;
    free(P.last_written);
    P.last_written = text;
    printf("wrote %s: %zu target group%s\n", P.out, targets, targets == 1 ? "" : "s");
    if (cli_flush(app)) return;
  }
  if (P.dirty) {
    P.dirty = 0;
    schedule(&P.throttle, PROMSD_THROTTLE_MS);
  }
}

static void read_next(void);

static void on_nodes(etcdreg_registry_t *reg, int status, const etcdreg_node_t *nodes, size_t count, size_t skipped,
                     void *data) {
  (void)reg;
  (void)data;
  if (P.app->finishing) {
    read_cleanup();
    return;
  }
  const char *group = P.cur[P.idx];
  if (status) {
    char what[200];
    snprintf(what, sizeof(what), "listing the nodes of %s", group);
    read_failed(what, status);
    return;
  }
  if (skipped) msg_add("prometheus-sd: %zu node value(s) in group %s could not be decoded and were skipped", skipped, group);
  for (size_t i = 0; i < count; i++) {
    json_t *tg = target_group(group, &nodes[i]);
    if (!tg || json_array_append_new(P.arr, tg)) {
      read_cleanup();
      cli_fail(P.app, CLI_EXIT_FAIL, "out of memory");
      return;
    }
  }
  P.idx++;
  read_next();
}

static void read_next(void) {
  if (P.idx >= P.ncur) {
    build_done();
    return;
  }
  int rv = etcdreg_nodes_list(P.app->reg, P.cur[P.idx], on_nodes, NULL);
  if (rv == ETCDREG_EINVAL) {
    const char *le = etcdreg_registry_last_error();
    char *g = strdup(P.cur[P.idx]);
    read_cleanup();
    cli_fail(P.app, CLI_EXIT_USAGE, "prometheus-sd: group '%s': %s", g ? g : "", le && *le ? le : "invalid");
    free(g);
  } else if (rv) {
    read_failed("listing nodes", rv);
  }
}

static void on_groups(etcdreg_registry_t *reg, int status, const char *const *names, size_t count, void *data) {
  (void)reg;
  (void)data;
  if (P.app->finishing) {
    read_cleanup();
    return;
  }
  if (status) {
    read_failed("listing groups", status);
    return;
  }
  P.cur = calloc(count + 1, sizeof(char *));
  P.cur_owned = 1;
  if (!P.cur) {
    read_cleanup();
    cli_fail(P.app, CLI_EXIT_FAIL, "out of memory");
    return;
  }
  for (size_t i = 0; i < count; i++) {
    if (!(P.cur[i] = strdup(names[i]))) {
      P.ncur = i;
      read_cleanup();
      cli_fail(P.app, CLI_EXIT_FAIL, "out of memory");
      return;
    }
  }
  P.ncur = count;
  P.idx = 0;
  read_next();
}

static void refresh(void) {
  cli_app_t *app = P.app;
  if (app->finishing) return;
  if (P.reading) {
    P.dirty = 1;
    return;
  }
  P.reading = 1;
  P.dirty = 0;
  free(P.msgs);
  P.msgs = NULL;
  P.msgs_len = P.msgs_cap = 0;
  P.arr = json_array();
  if (!P.arr) {
    read_cleanup();
    cli_fail(app, CLI_EXIT_FAIL, "out of memory");
    return;
  }
  if (P.filter) {
    P.cur = P.filter;
    P.ncur = P.nfilter;
    P.cur_owned = 0;
    P.idx = 0;
    read_next();
    return;
  }
  int rv = etcdreg_group_list(app->reg, on_groups, NULL);
  if (rv) read_failed("listing groups", rv);
}

/* ---- the watch ---- */

static void start_watch(void);

static void on_watch_ready(etcdreg_registry_watch_t *w, void *data) {
  (void)w;
  (void)data;
  refresh();
}

static void on_watch_event(etcdreg_registry_watch_t *w, const etcdreg_event_t *ev, void *data) {
  (void)w;
  (void)data;
  if (!in_filter(ev->group)) return;
  if (!uv_is_active((uv_handle_t *)&P.throttle)) schedule(&P.throttle, PROMSD_THROTTLE_MS);
}

static void on_watch_ended(etcdreg_registry_watch_t *w, int status, const char *msg, void *data) {
  (void)w;
  (void)data;
  P.watch = NULL;
  if (P.app->finishing) return;
  cli_err("prometheus-sd: the watch ended: %s%s%s; restarting in %d ms", etcdreg_strerror(status),
          msg && *msg ? ": " : "", msg ? msg : "", PROMSD_RETRY_MS);
  P.retry_watch = 1;
  schedule(&P.retry, PROMSD_RETRY_MS);
}

static void start_watch(void) {
  etcdreg_registry_watch_cbs_t cbs = {on_watch_ready, on_watch_event, on_watch_ended};
  int rv = etcdreg_registry_watch_services(P.app->reg, &cbs, NULL, &P.watch);
  if (rv) {
    if (!P.written_once) {
      cli_fail(P.app, CLI_EXIT_FAIL, "prometheus-sd: cannot watch the registry: %s", etcdreg_strerror(rv));
      return;
    }
    cli_err("prometheus-sd: cannot watch the registry: %s; retrying in %d ms", etcdreg_strerror(rv), PROMSD_RETRY_MS);
    P.retry_watch = 1;
    schedule(&P.retry, PROMSD_RETRY_MS);
  }
}

static void on_throttle(uv_timer_t *t) {
  (void)t;
  refresh();
}

static void on_retry(uv_timer_t *t) {
  (void)t;
  if (P.retry_watch) {
    P.retry_watch = 0;
    start_watch(); /* ready reads everything */
  } else {
    refresh();
  }
}

static void promsd_start(cli_app_t *app) {
  if (!P.out) {
    refresh();
    return;
  }
  uv_timer_init(&app->loop, &P.throttle);
  uv_timer_init(&app->loop, &P.retry);
  P.timers_on = 1;
  start_watch();
}

static void on_closed(uv_handle_t *h) { (void)h; }

static void promsd_cleanup(cli_app_t *app) {
  (void)app;
  if (P.timers_on) {
    P.timers_on = 0;
    uv_close((uv_handle_t *)&P.throttle, on_closed);
    uv_close((uv_handle_t *)&P.retry, on_closed);
  }
}

const cli_command_t cli_promsd_command = {"prometheus-sd", promsd_start, NULL, promsd_cleanup};
