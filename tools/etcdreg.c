/* etcdreg - command-line tool for the service registry (go.lumeweb.com/etcd-registry
 * layout and JSON) on etcd v3.
 *
 *   etcdreg [--endpoints E,...] [--base /services] [--user U --password-file F]
 *           [--timeout 5s] [--json] COMMAND [ARGS]
 *
 * Everything runs on one libuv loop through the library's public API. Exit status: 0
 * success, 1 failure (etcd unreachable, not found, refused, ...), 2 bad arguments. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ------------------------------------------------------------------------------------ */
/* Help                                                                                 */

static const char usage_main[] =
    "usage: etcdreg [GLOBAL OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "The service registry on etcd v3: groups with shared configuration and nodes\n"
    "(scrape targets) kept registered with a TTL; the etcd layout and JSON of the Go\n"
    "library go.lumeweb.com/etcd-registry.\n"
    "\n"
    "Commands:\n"
    "  groups                    list the groups\n"
    "  group NAME                show a group's configuration (its password as ***)\n"
    "  nodes GROUP               list a group's nodes\n"
    "  configure GROUP [...]     create the group if needed and set its configuration\n"
    "  register GROUP --id ID --type T --port P [...]\n"
    "                            register a node and keep it registered until SIGINT/SIGTERM\n"
    "  deregister GROUP ID TYPE  delete a node (and the group, if it was the last node)\n"
    "  watch [GROUP]             print changes as they happen, one line per event\n"
    "  prometheus-sd [...]       the registry as a Prometheus file_sd target list\n"
    "\n"
    "Global options (before or after the command):\n"
    "  --endpoints E,...   etcd endpoints, comma-separated (default: $ETCDREG_ENDPOINTS,\n"
    "                      else 127.0.0.1:2379)\n"
    "  --base PATH         the registry's base key (default /services)\n"
    "  --user U            etcd user name; the password comes from --password-file or\n"
    "                      $ETCDREG_PASSWORD, never from the command line\n"
    "  --password-file F   file holding the etcd user's password (one trailing newline\n"
    "                      is ignored)\n"
    "  --timeout D         deadline of connecting and of each etcd call (default 5s;\n"
    "                      durations like 500ms, 5s, 1m, 1m30s)\n"
    "  --json              JSON output\n"
    "  -h, --help          this help; 'etcdreg COMMAND --help' describes a command\n"
    "\n"
    "Exit status: 0 success, 1 failure (etcd unreachable, not found, refused, ...),\n"
    "2 bad arguments.\n";

static const char usage_groups[] =
    "usage: etcdreg [GLOBAL OPTIONS] groups\n"
    "\n"
    "Lists the groups (every group with a configuration key under the base), sorted, one\n"
    "per line; with --json a JSON array of names.\n";

static const char usage_group[] =
    "usage: etcdreg [GLOBAL OPTIONS] group NAME\n"
    "\n"
    "Shows a group's configuration: name, creation time, user name, password (\"***\"\n"
    "when set; it is never printed) and common labels. With --json the Go library's\n"
    "ServiceGroupData object, password replaced by \"***\". Exit 1 if it does not exist.\n";

static const char usage_nodes[] =
    "usage: etcdreg [GLOBAL OPTIONS] nodes GROUP\n"
    "\n"
    "Lists a group's nodes, sorted by key, one per line:\n"
    "  ID/TYPE HOST:PORT PATH STATUS last_seen=TIME LABEL=VALUE...\n"
    "(HOST: see 'etcdreg prometheus-sd --help'). With --json a JSON array of the Go\n"
    "library's Node objects. Labels are as stored: the group's common labels merged.\n";

static const char usage_configure[] =
    "usage: etcdreg [GLOBAL OPTIONS] configure GROUP [--label KEY=VALUE ...]\n"
    "                                [--group-user U --group-password-file F]\n"
    "\n"
    "Creates the group if it does not exist, then replaces its configuration (spec) with\n"
    "the one given: the common labels (merged into every node registered afterwards;\n"
    "node labels win) and the group credentials. Options not given become empty.\n"
    "The change is a compare-and-swap, retried on concurrent modification.\n"
    "\n"
    "  --label KEY=VALUE          a common label (repeatable)\n"
    "  --group-user U             the group's user name (metadata for applications,\n"
    "                             stored in plain text as the Go library does)\n"
    "  --group-password-file F    file holding the group's password (one trailing newline\n"
    "                             is ignored); shown as *** by 'etcdreg group'\n";

static const char usage_register[] =
    "usage: etcdreg [GLOBAL OPTIONS] register GROUP --id ID --type TYPE --port PORT\n"
    "                                [--path /metrics] [--label KEY=VALUE ...] [--ttl 30s]\n"
    "\n"
    "Creates (or joins) the group and registers the node <base>/GROUP/nodes/ID_TYPE on a\n"
    "lease with the TTL, then stays in the foreground keeping it registered: the lease is\n"
    "renewed, and if it is lost (or the key deleted) the node is registered again. Prints\n"
    "\"registered ...\" after each (re-)registration and each failed attempt on stderr.\n"
    "SIGINT or SIGTERM deregisters the node and exits 0.\n"
    "\n"
    "  --id ID            the node's ID (no '/')\n"
    "  --type TYPE        the exporter type, e.g. node_exporter (no '/')\n"
    "  --port PORT        the port to scrape (1..65535)\n"
    "  --path PATH        the metrics path (default /metrics)\n"
    "  --label KEY=VALUE  a node label (repeatable); 'address' (or 'host') sets the host\n"
    "                     prometheus-sd scrapes, else the ID is used\n"
    "  --ttl D            lease TTL (default 30s; rounded up to whole seconds)\n";

static const char usage_deregister[] =
    "usage: etcdreg [GLOBAL OPTIONS] deregister GROUP ID TYPE\n"
    "\n"
    "Deletes the node <base>/GROUP/nodes/ID_TYPE (absent is success), then deletes the\n"
    "group if no node is left in it. A running 'etcdreg register' of that node would\n"
    "register it again: stop that instead.\n";

static const char usage_watch[] =
    "usage: etcdreg [GLOBAL OPTIONS] watch [GROUP]\n"
    "\n"
    "Watches every group and node (or one group) and prints one line per event until\n"
    "SIGINT or SIGTERM (exit 0):\n"
    "  create|update|delete GROUP ID/TYPE HOST:PORT PATH LABEL=VALUE...  (a node)\n"
    "  create|update|delete GROUP config [username=U password=***] LABEL=VALUE...\n"
    "Deletes carry the node or group as it was. With --json one object per line, the Go\n"
    "library's WatchEvent: {\"type\":\"create\",\"group_name\":\"g\",\"node\":{...}}; group\n"
    "configuration events have \"group\":{...} (password as ***) instead of \"node\".\n"
    "Reconnects resume without loss. \"watching ...\" is printed on stderr once the watch\n"
    "is established.\n";

static const char usage_promsd[] =
    "usage: etcdreg [GLOBAL OPTIONS] prometheus-sd [--out FILE] [--group G ...]\n"
    "\n"
    "Prints the registry as a Prometheus file_sd target list:\n"
    "  [{\"targets\": [\"HOST:PORT\"], \"labels\": {...}}, ...]\n"
    "one target group per node, sorted by group, then node key. The labels are the node's\n"
    "labels as stored (the group's common labels merged) plus __metrics_path__, group and\n"
    "exporter_type (these three win over node labels of the same name). Label names not\n"
    "matching [a-zA-Z_][a-zA-Z0-9_]* are sanitised: invalid characters become '_' and a\n"
    "leading digit gets a '_' prefix; when two names become the same, the first in sorted\n"
    "order is kept and the collision is reported on stderr.\n"
    "\n"
    "HOST is the node's 'address' label if present and non-empty, else its 'host' label\n"
    "if present and non-empty, else the node's ID; an IPv6 address is put in brackets.\n"
    "\n"
    "  --group G   only this group (repeatable; default: every group)\n"
    "  --out FILE  write FILE instead of printing, atomically (FILE.tmp, fsync, rename),\n"
    "              and keep it current from a watch until SIGINT or SIGTERM (exit 0);\n"
    "              survives etcd restarts. Each rewrite prints one line on stdout.\n";

/* ------------------------------------------------------------------------------------ */
/* Messages and lifecycle                                                               */

void cli_err(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("etcdreg: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stderr);
}

void cli_fail(cli_app_t *app, int code, const char *fmt, ...) {
  if (!app->finishing) {
    va_list ap;
    va_start(ap, fmt);
    fputs("etcdreg: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
  }
  cli_finish(app, code);
}

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void on_registry_closed(etcdreg_registry_t *reg, void *data) {
  (void)reg;
  cli_app_t *app = data;
  app->reg = NULL;
}

void cli_finish(cli_app_t *app, int code) {
  if (app->finishing) return;
  app->finishing = 1;
  app->exit_code = code;
  if (app->open_timer_on) {
    app->open_timer_on = 0;
    uv_close((uv_handle_t *)&app->open_timer, on_handle_closed);
  }
  if (app->signals_on) {
    app->signals_on = 0;
    uv_close((uv_handle_t *)&app->sigint, on_handle_closed);
    uv_close((uv_handle_t *)&app->sigterm, on_handle_closed);
  }
  if (app->cmd && app->cmd->cleanup) app->cmd->cleanup(app);
  if (app->reg && etcdreg_registry_close(app->reg, on_registry_closed, app) != 0) app->reg = NULL;
}

int cli_flush(cli_app_t *app) {
  if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
  cli_finish(app, CLI_EXIT_FAIL);
  return -1;
}

/* "strerror" or "strerror: message" (when the message adds something). */
static const char *errmsg(int status, const char *msg, char *buf, size_t len) {
  const char *s = etcdreg_strerror(status);
  if (msg && *msg && strcmp(msg, s) != 0) snprintf(buf, len, "%s: %s", s, msg);
  else snprintf(buf, len, "%s", s);
  return buf;
}

/* A call that returned an error at once (it fires no callback). */
static void call_failed(cli_app_t *app, const char *what, int rv) {
  const char *le = etcdreg_registry_last_error();
  if (rv == ETCDREG_EINVAL) cli_fail(app, CLI_EXIT_USAGE, "%s: %s", what, le && *le ? le : etcdreg_strerror(rv));
  else cli_fail(app, CLI_EXIT_FAIL, "%s: %s", what, etcdreg_strerror(rv));
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)signum;
  cli_app_t *app = s->data;
  if (app->finishing) return;
  if (++app->signal_count == 1 && app->cmd->stop) app->cmd->stop(app);
  else cli_finish(app, app->exit_code);
}

static void watch_signals(cli_app_t *app) {
  uv_signal_init(&app->loop, &app->sigint);
  uv_signal_init(&app->loop, &app->sigterm);
  app->sigint.data = app->sigterm.data = app;
  uv_signal_start(&app->sigint, on_signal, SIGINT);
  uv_signal_start(&app->sigterm, on_signal, SIGTERM);
  app->signals_on = 1;
}

static void on_open_timeout(uv_timer_t *t) {
  cli_app_t *app = t->data;
  cli_fail(app, CLI_EXIT_FAIL, "cannot connect to etcd at %s: no answer within the timeout (%llu ms)",
           app->endpoints_text, (unsigned long long)app->timeout_ms);
}

static void on_open(etcdreg_registry_t *reg, int status, const char *message, void *data) {
  (void)reg;
  cli_app_t *app = data;
  if (app->open_timer_on) {
    app->open_timer_on = 0;
    uv_close((uv_handle_t *)&app->open_timer, on_handle_closed);
  }
  if (app->finishing) return;
  if (status) {
    char buf[512];
    cli_fail(app, CLI_EXIT_FAIL, "cannot connect to etcd at %s: %s", app->endpoints_text,
             errmsg(status, message, buf, sizeof(buf)));
    return;
  }
  app->opened = 1;
  app->cmd->start(app);
}

/* ------------------------------------------------------------------------------------ */
/* Command arguments                                                                    */

enum {
  OPT_ENDPOINTS = 1, OPT_BASE, OPT_USER, OPT_PASSWORD_FILE, OPT_TIMEOUT, OPT_JSON, OPT_HELP,
  OPT_LABEL = 100, OPT_GROUP_USER, OPT_GROUP_PASSWORD_FILE, OPT_ID, OPT_TYPE, OPT_PORT, OPT_PATH, OPT_TTL, OPT_OUT, OPT_GROUP
};

typedef struct {
  const char *name;
  int arg;
  int id;
} opt_t;

static const opt_t global_opts[] = {
    {"endpoints", 1, OPT_ENDPOINTS}, {"base", 1, OPT_BASE}, {"user", 1, OPT_USER}, {"password-file", 1, OPT_PASSWORD_FILE},
    {"timeout", 1, OPT_TIMEOUT},     {"json", 0, OPT_JSON}, {"help", 0, OPT_HELP}, {NULL, 0, 0}};
static const opt_t no_opts[] = {{NULL, 0, 0}};
static const opt_t configure_opts[] = {
    {"label", 1, OPT_LABEL}, {"group-user", 1, OPT_GROUP_USER}, {"group-password-file", 1, OPT_GROUP_PASSWORD_FILE}, {NULL, 0, 0}};
static const opt_t register_opts[] = {{"id", 1, OPT_ID},       {"type", 1, OPT_TYPE},   {"port", 1, OPT_PORT}, {"path", 1, OPT_PATH},
                                      {"label", 1, OPT_LABEL}, {"ttl", 1, OPT_TTL},     {NULL, 0, 0}};
static const opt_t promsd_opts[] = {{"out", 1, OPT_OUT}, {"group", 1, OPT_GROUP}, {NULL, 0, 0}};

typedef struct {
  const char *endpoints, *base, *user, *password_file, *timeout;
  int json, help;
} globals_t;

/* Every command's arguments and run-time state (one command per process). */
typedef struct {
  const char **pos;
  size_t npos;
  cli_labels_t labels;
  const char *group_user, *group_password_file;
  char *group_password;
  const char *id, *type, *path;
  long port;
  uint64_t ttl_ms;
  const char *out;
  const char **groups;
  size_t ngroups;
  /* run time */
  etcdreg_registration_t *registration;
  int stopping;
  etcdreg_registry_watch_t *watch;
} cmd_t;

static cmd_t C;

static void usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("etcdreg: ", stderr);
  if (cmd) fprintf(stderr, "%s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see 'etcdreg %s%s--help')\n", cmd ? cmd : "", cmd ? " " : "");
  va_end(ap);
}

static const opt_t *find_opt(const opt_t *t, const char *name, size_t n) {
  for (; t && t->name; t++)
    if (strlen(t->name) == n && strncmp(t->name, name, n) == 0) return t;
  return NULL;
}

static int set_cmd_opt(const char *cmd, int id, const char *val) {
  char err[300];
  switch (id) {
  case OPT_LABEL:
    if (cli_labels_add(&C.labels, val, "--label", err, sizeof(err))) {
      usage_error(cmd, "%s", err);
      return -1;
    }
    return 0;
  case OPT_GROUP_USER: C.group_user = val; return 0;
  case OPT_GROUP_PASSWORD_FILE: C.group_password_file = val; return 0;
  case OPT_ID: C.id = val; return 0;
  case OPT_TYPE: C.type = val; return 0;
  case OPT_PATH: C.path = val; return 0;
  case OPT_OUT: C.out = val; return 0;
  case OPT_GROUP: C.groups[C.ngroups++] = val; return 0;
  case OPT_PORT:
    if (cli_parse_int(val, 1, 65535, &C.port)) {
      usage_error(cmd, "--port must be an integer from 1 to 65535, got '%s'", val);
      return -1;
    }
    return 0;
  case OPT_TTL:
    if (cli_parse_duration(val, &C.ttl_ms)) {
      usage_error(cmd, "invalid duration for --ttl: '%s' (e.g. 10s, 1m)", val);
      return -1;
    }
    return 0;
  default: return -1;
  }
}

static void set_global_opt(globals_t *g, int id, const char *val) {
  switch (id) {
  case OPT_ENDPOINTS: g->endpoints = val; break;
  case OPT_BASE: g->base = val; break;
  case OPT_USER: g->user = val; break;
  case OPT_PASSWORD_FILE: g->password_file = val; break;
  case OPT_TIMEOUT: g->timeout = val; break;
  case OPT_JSON: g->json = 1; break;
  case OPT_HELP: g->help = 1; break;
  default: break;
  }
}

/* Parses argv[*pi..]: global options anywhere, the command's options (copts), and
 * positionals into C.pos; with stop_at_positional it returns at the first positional.
 * 0, or -1 after printing a one-line error. */
static int parse_args(const char *cmd, int argc, char **argv, int *pi, globals_t *g, const opt_t *copts,
                      int stop_at_positional) {
  int i = *pi, only_pos = 0;
  for (; i < argc; i++) {
    const char *s = argv[i];
    if (!only_pos && strcmp(s, "--") == 0) {
      only_pos = 1;
      continue;
    }
    if (!only_pos && strcmp(s, "-h") == 0) {
      g->help = 1;
      continue;
    }
    if (!only_pos && s[0] == '-' && s[1] == '-' && s[2]) {
      const char *name = s + 2, *eq = strchr(name, '=');
      size_t n = eq ? (size_t)(eq - name) : strlen(name);
      const opt_t *o = find_opt(copts, name, n);
      int global = 0;
      if (!o && (o = find_opt(global_opts, name, n))) global = 1;
      if (!o) {
        if ((n == 8 && strncmp(name, "password", 8) == 0) || (n == 14 && strncmp(name, "group-password", 14) == 0))
          usage_error(cmd, "passwords are not accepted on the command line: use --%.*s-file F%s", (int)n, name,
                      n == 8 ? " or ETCDREG_PASSWORD" : "");
        else
          usage_error(cmd, "unknown option '--%.*s'", (int)n, name);
        return -1;
      }
      const char *val = NULL;
      if (o->arg) {
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else {
          usage_error(cmd, "option --%s needs a value", o->name);
          return -1;
        }
      } else if (eq) {
        usage_error(cmd, "option --%s takes no value", o->name);
        return -1;
      }
      if (global) set_global_opt(g, o->id, val);
      else if (set_cmd_opt(cmd, o->id, val)) return -1;
      continue;
    }
    if (!only_pos && s[0] == '-' && s[1]) {
      usage_error(cmd, "unknown option '%s'", s);
      return -1;
    }
    if (stop_at_positional) break;
    C.pos[C.npos++] = s;
  }
  *pi = i;
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Output helpers                                                                       */

static void print_labels(FILE *f, const etcdreg_label_t *l, size_t n) {
  for (size_t i = 0; i < n; i++) fprintf(f, " %s=%s", l[i].key, l[i].value);
}

/* ID/TYPE HOST:PORT PATH */
static void print_node_head(FILE *f, const etcdreg_node_t *n) {
  char hp[512];
  cli_node_hostport(n, hp, sizeof(hp));
  fprintf(f, "%s/%s %s %s", n->id, n->exporter_type, hp, n->metrics_path);
}

static void print_group_text(const etcdreg_group_t *g) {
  char t[CLI_TIME_BUF];
  cli_time_format(g->created_ns, t);
  printf("name: %s\ncreated: %s\nusername: %s\npassword: %s\ncommon_labels:", g->name, t, g->spec.username,
         g->spec.password && g->spec.password[0] ? "***" : "");
  if (g->spec.common_label_count == 0) printf(" (none)");
  print_labels(stdout, g->spec.common_labels, g->spec.common_label_count);
  printf("\n");
}

/* ------------------------------------------------------------------------------------ */
/* groups, group, nodes                                                                 */

static void on_groups(etcdreg_registry_t *reg, int status, const char *const *names, size_t count, void *data) {
  (void)reg;
  cli_app_t *app = data;
  if (app->finishing) return;
  if (status) {
    cli_fail(app, CLI_EXIT_FAIL, "listing groups: %s", etcdreg_strerror(status));
    return;
  }
  if (app->json) {
    json_t *a = json_array();
    for (size_t i = 0; i < count && a; i++) json_array_append_new(a, json_string(names[i]));
    if (cli_print_json(stdout, a, 0)) {
      cli_fail(app, CLI_EXIT_FAIL, "out of memory");
      return;
    }
  } else {
    for (size_t i = 0; i < count; i++) printf("%s\n", names[i]);
  }
  if (cli_flush(app) == 0) cli_finish(app, CLI_EXIT_OK);
}

static void groups_start(cli_app_t *app) {
  int rv = etcdreg_group_list(app->reg, on_groups, app);
  if (rv) call_failed(app, "listing groups", rv);
}

static void on_group(etcdreg_registry_t *reg, int status, const etcdreg_group_t *g, const char *msg, void *data) {
  (void)reg;
  cli_app_t *app = data;
  if (app->finishing) return;
  char buf[512];
  if (status == ETCDREG_ENOTFOUND) {
    cli_fail(app, CLI_EXIT_FAIL, "group '%s' not found", C.pos[0]);
    return;
  }
  if (status) {
    cli_fail(app, CLI_EXIT_FAIL, "group %s: %s", C.pos[0], errmsg(status, msg, buf, sizeof(buf)));
    return;
  }
  if (app->json) {
    if (cli_print_json(stdout, cli_group_json(g), 0)) {
      cli_fail(app, CLI_EXIT_FAIL, "out of memory");
      return;
    }
  } else {
    print_group_text(g);
  }
  if (cli_flush(app) == 0) cli_finish(app, CLI_EXIT_OK);
}

static void group_start(cli_app_t *app) {
  int rv = etcdreg_group_get(app->reg, C.pos[0], on_group, app);
  if (rv) call_failed(app, "group", rv);
}

static void on_nodes(etcdreg_registry_t *reg, int status, const etcdreg_node_t *nodes, size_t count, size_t skipped,
                     void *data) {
  (void)reg;
  cli_app_t *app = data;
  if (app->finishing) return;
  if (status) {
    cli_fail(app, CLI_EXIT_FAIL, "nodes of %s: %s", C.pos[0], etcdreg_strerror(status));
    return;
  }
  if (app->json) {
    json_t *a = json_array();
    for (size_t i = 0; i < count && a; i++) json_array_append_new(a, cli_node_json(&nodes[i]));
    if (cli_print_json(stdout, a, 0)) {
      cli_fail(app, CLI_EXIT_FAIL, "out of memory");
      return;
    }
  } else {
    for (size_t i = 0; i < count; i++) {
      char t[CLI_TIME_BUF];
      cli_time_format(nodes[i].last_seen_ns, t);
      print_node_head(stdout, &nodes[i]);
      printf(" %s last_seen=%s", nodes[i].status, t);
      print_labels(stdout, nodes[i].labels, nodes[i].label_count);
      printf("\n");
    }
  }
  if (skipped) cli_err("%zu node value(s) in group %s could not be decoded and were skipped", skipped, C.pos[0]);
  if (cli_flush(app) == 0) cli_finish(app, CLI_EXIT_OK);
}

static void nodes_start(cli_app_t *app) {
  int rv = etcdreg_nodes_list(app->reg, C.pos[0], on_nodes, app);
  if (rv) call_failed(app, "nodes", rv);
}

/* ------------------------------------------------------------------------------------ */
/* configure                                                                            */

static void on_configured(etcdreg_registry_t *reg, int status, const etcdreg_group_t *g, const char *msg,
                          void *data) {
  (void)reg;
  cli_app_t *app = data;
  if (app->finishing) return;
  char buf[512];
  if (status) {
    cli_fail(app, status == ETCDREG_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL, "configure %s: %s", C.pos[0],
             errmsg(status, msg, buf, sizeof(buf)));
    return;
  }
  if (app->json) {
    if (cli_print_json(stdout, cli_group_json(g), 0)) {
      cli_fail(app, CLI_EXIT_FAIL, "out of memory");
      return;
    }
  } else {
    printf("configured group %s\n", g->name);
    print_group_text(g);
  }
  if (cli_flush(app) == 0) cli_finish(app, CLI_EXIT_OK);
}

static int configure_update(const etcdreg_group_t *current, etcdreg_group_spec_t *spec, void *data) {
  (void)current;
  (void)data;
  spec->username = C.group_user ? C.group_user : "";
  spec->password = C.group_password ? C.group_password : "";
  spec->common_labels = C.labels.items;
  spec->common_label_count = C.labels.count;
  return 0;
}

static void on_configure_joined(etcdreg_registry_t *reg, int status, const etcdreg_group_t *g, const char *msg,
                                void *data) {
  (void)g;
  cli_app_t *app = data;
  if (app->finishing) return;
  char buf[512];
  if (status) {
    cli_fail(app, CLI_EXIT_FAIL, "creating group %s: %s", C.pos[0], errmsg(status, msg, buf, sizeof(buf)));
    return;
  }
  int rv = etcdreg_group_update(reg, C.pos[0], configure_update, 0, on_configured, app);
  if (rv) call_failed(app, "configure", rv);
}

static void configure_start(cli_app_t *app) {
  int rv = etcdreg_group_create_or_join(app->reg, C.pos[0], on_configure_joined, app);
  if (rv) call_failed(app, "configure", rv);
}

/* ------------------------------------------------------------------------------------ */
/* register                                                                             */

static void on_registered(etcdreg_registration_t *r, const etcdreg_node_t *n, uint64_t ttl_ms, void *data) {
  (void)r;
  cli_app_t *app = data;
  if (app->finishing || C.stopping) return;
  if (app->json) {
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("registered"));
    json_object_set_new(o, "group_name", json_string(C.pos[0]));
    json_object_set_new(o, "node", cli_node_json(n));
    json_object_set_new(o, "ttl_ms", json_integer((json_int_t)ttl_ms));
    if (cli_print_json(stdout, o, 1)) {
      cli_fail(app, CLI_EXIT_FAIL, "out of memory");
      return;
    }
  } else {
    printf("registered %s ", C.pos[0]);
    print_node_head(stdout, n);
    printf(" (lease TTL %llu s)", (unsigned long long)(ttl_ms / 1000));
    print_labels(stdout, n->labels, n->label_count);
    printf("\n");
  }
  cli_flush(app);
}

static void on_register_error(etcdreg_registration_t *r, int err, const char *msg, int attempt, uint64_t retry_in_ms,
                              void *data) {
  (void)r;
  cli_app_t *app = data;
  if (app->finishing) return;
  char buf[512];
  cli_err("register %s %s/%s: %s (attempt %d, retrying in %llu ms)", C.pos[0], C.id, C.type,
          errmsg(err, msg, buf, sizeof(buf)), attempt, (unsigned long long)retry_in_ms);
}

static void on_register_ended(etcdreg_registration_t *r, int status, void *data) {
  (void)r;
  cli_app_t *app = data;
  C.registration = NULL;
  if (app->finishing) return;
  if (status == ETCDREG_ECANCELED) {
    if (app->json) {
      json_t *o = json_object();
      json_object_set_new(o, "event", json_string("deregistered"));
      json_object_set_new(o, "group_name", json_string(C.pos[0]));
      json_object_set_new(o, "id", json_string(C.id));
      json_object_set_new(o, "exporter_type", json_string(C.type));
      cli_print_json(stdout, o, 1);
    } else {
      printf("deregistered %s %s/%s\n", C.pos[0], C.id, C.type);
    }
    fflush(stdout);
    cli_finish(app, CLI_EXIT_OK);
  } else {
    cli_fail(app, CLI_EXIT_FAIL, "registration of %s/%s ended: %s", C.id, C.type, etcdreg_strerror(status));
  }
}

static void on_register_joined(etcdreg_registry_t *reg, int status, const etcdreg_group_t *g, const char *msg,
                               void *data) {
  (void)g;
  cli_app_t *app = data;
  if (app->finishing) return;
  char buf[512];
  if (status) {
    cli_fail(app, CLI_EXIT_FAIL, "creating or joining group %s: %s", C.pos[0], errmsg(status, msg, buf, sizeof(buf)));
    return;
  }
  if (C.stopping) { /* a signal came while joining */
    cli_finish(app, CLI_EXIT_OK);
    return;
  }
  etcdreg_node_t n = {.id = C.id,
                      .exporter_type = C.type,
                      .port = (int)C.port,
                      .metrics_path = C.path,
                      .labels = C.labels.items,
                      .label_count = C.labels.count};
  etcdreg_registration_cbs_t cbs = {on_registered, on_register_error, on_register_ended};
  int rv = etcdreg_register(reg, C.pos[0], &n, C.ttl_ms, NULL, &cbs, app, &C.registration);
  if (rv) call_failed(app, "register", rv);
}

static void register_start(cli_app_t *app) {
  int rv = etcdreg_group_create_or_join(app->reg, C.pos[0], on_register_joined, app);
  if (rv) call_failed(app, "register", rv);
}

static void register_stop(cli_app_t *app) {
  if (C.registration && !C.stopping) {
    C.stopping = 1;
    etcdreg_registration_stop(C.registration); /* ended follows, then we close */
  } else if (!app->opened) {
    cli_finish(app, CLI_EXIT_OK);
  } else {
    C.stopping = 1; /* joining: on_register_joined finishes */
  }
}

/* ------------------------------------------------------------------------------------ */
/* deregister                                                                           */

static void on_deregistered(etcdreg_registry_t *reg, int status, const char *msg, void *data) {
  (void)reg;
  cli_app_t *app = data;
  if (app->finishing) return;
  char buf[512];
  if (status) {
    cli_fail(app, CLI_EXIT_FAIL, "deregister %s %s/%s: %s", C.pos[0], C.pos[1], C.pos[2],
             errmsg(status, msg, buf, sizeof(buf)));
    return;
  }
  if (app->json) {
    json_t *o = json_object();
    json_object_set_new(o, "group_name", json_string(C.pos[0]));
    json_object_set_new(o, "id", json_string(C.pos[1]));
    json_object_set_new(o, "exporter_type", json_string(C.pos[2]));
    json_object_set_new(o, "deleted", json_true());
    cli_print_json(stdout, o, 0);
  } else {
    printf("deregistered %s %s/%s\n", C.pos[0], C.pos[1], C.pos[2]);
  }
  if (cli_flush(app) == 0) cli_finish(app, CLI_EXIT_OK);
}

static void deregister_start(cli_app_t *app) {
  int rv = etcdreg_node_delete(app->reg, C.pos[0], C.pos[1], C.pos[2], on_deregistered, app);
  if (rv) call_failed(app, "deregister", rv);
}

/* ------------------------------------------------------------------------------------ */
/* watch                                                                                */

static void on_watch_ready(etcdreg_registry_watch_t *w, void *data) {
  (void)w;
  cli_app_t *app = data;
  if (app->finishing) return;
  fprintf(stderr, "watching %s%s%s (SIGINT or SIGTERM stops)\n", etcdreg_registry_base(app->reg),
          C.npos ? "/" : "", C.npos ? C.pos[0] : "");
  fflush(stderr);
}

static void on_watch_event(etcdreg_registry_watch_t *w, const etcdreg_event_t *ev, void *data) {
  (void)w;
  cli_app_t *app = data;
  if (app->finishing) return;
  const char *type = etcdreg_reg_event_type_name(ev->type);
  if (app->json) {
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "group_name", json_string(ev->group));
    if (ev->node) json_object_set_new(o, "node", cli_node_json(ev->node));
    else if (ev->group_config) json_object_set_new(o, "group", cli_group_json(ev->group_config));
    if (cli_print_json(stdout, o, 1)) {
      cli_fail(app, CLI_EXIT_FAIL, "out of memory");
      return;
    }
  } else if (ev->node) {
    printf("%s %s ", type, ev->group);
    print_node_head(stdout, ev->node);
    print_labels(stdout, ev->node->labels, ev->node->label_count);
    printf("\n");
  } else if (ev->group_config) {
    const etcdreg_group_spec_t *s = &ev->group_config->spec;
    printf("%s %s config", type, ev->group);
    if (s->username && s->username[0]) printf(" username=%s", s->username);
    if (s->password && s->password[0]) printf(" password=***");
    print_labels(stdout, s->common_labels, s->common_label_count);
    printf("\n");
  }
  cli_flush(app);
}

static void on_watch_ended(etcdreg_registry_watch_t *w, int status, const char *msg, void *data) {
  (void)w;
  cli_app_t *app = data;
  C.watch = NULL;
  if (app->finishing) return;
  char buf[512];
  if (status == ETCDREG_ECANCELED) cli_finish(app, CLI_EXIT_OK);
  else cli_fail(app, CLI_EXIT_FAIL, "watch ended: %s", errmsg(status, msg, buf, sizeof(buf)));
}

static void watch_start(cli_app_t *app) {
  etcdreg_registry_watch_cbs_t cbs = {on_watch_ready, on_watch_event, on_watch_ended};
  int rv = C.npos ? etcdreg_registry_watch_group(app->reg, C.pos[0], &cbs, app, &C.watch)
                  : etcdreg_registry_watch_services(app->reg, &cbs, app, &C.watch);
  if (rv) call_failed(app, "watch", rv);
}

static void watch_stop(cli_app_t *app) {
  if (C.watch) etcdreg_registry_watch_cancel(C.watch); /* ended(ECANCELED) finishes */
  else cli_finish(app, CLI_EXIT_OK);
}

/* ------------------------------------------------------------------------------------ */
/* Commands                                                                             */

typedef struct {
  cli_command_t cmd;
  const opt_t *opts;
  const char *usage;
  size_t min_pos, max_pos;
  const char *pos_names; /* for "expected ..." */
  int long_running;      /* handles SIGINT/SIGTERM */
} command_def_t;

static const command_def_t commands[] = {
    {{"groups", groups_start, NULL, NULL}, no_opts, usage_groups, 0, 0, "", 0},
    {{"group", group_start, NULL, NULL}, no_opts, usage_group, 1, 1, "NAME", 0},
    {{"nodes", nodes_start, NULL, NULL}, no_opts, usage_nodes, 1, 1, "GROUP", 0},
    {{"configure", configure_start, NULL, NULL}, configure_opts, usage_configure, 1, 1, "GROUP", 0},
    {{"register", register_start, register_stop, NULL}, register_opts, usage_register, 1, 1, "GROUP", 1},
    {{"deregister", deregister_start, NULL, NULL}, no_opts, usage_deregister, 3, 3, "GROUP ID TYPE", 0},
    {{"watch", watch_start, watch_stop, NULL}, no_opts, usage_watch, 0, 1, "[GROUP]", 1},
    {{"prometheus-sd", NULL, NULL, NULL}, promsd_opts, usage_promsd, 0, 0, "", 1},
};

static const command_def_t *find_command(const char *name) {
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    if (strcmp(commands[i].cmd.name, name) == 0) return &commands[i];
  return NULL;
}

static int print_help(const char *text) {
  fputs(text, stdout);
  return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* Splits the endpoint list; -1 on an empty element. */
static int split_endpoints(cli_app_t *app, const char *text) {
  size_t n = 1;
  for (const char *p = text; *p; p++) n += *p == ',';
  app->endpoints = calloc(n + 1, sizeof(char *));
  if (!app->endpoints) return -1;
  const char *p = text;
  for (size_t i = 0; i < n; i++) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    while (len && (*p == ' ' || *p == '\t')) p++, len--;
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
    if (len == 0) return -1;
    app->endpoints[i] = strndup(p, len);
    if (!app->endpoints[i]) return -1;
    p = e ? e + 1 : p + len;
  }
  return 0;
}

static void free_app(cli_app_t *app) {
  if (app->endpoints)
    for (size_t i = 0; app->endpoints[i]; i++) free(app->endpoints[i]);
  free(app->endpoints);
  if (app->password) {
    memset(app->password, 0, strlen(app->password));
    free(app->password);
  }
  if (C.group_password) {
    memset(C.group_password, 0, strlen(C.group_password));
    free(C.group_password);
  }
  cli_labels_free(&C.labels);
  cli_promsd_free(app);
  free(C.pos);
  free(C.groups);
}

static int run(int argc, char **argv, cli_app_t *app) {
  globals_t g = {0};
  C.pos = calloc((size_t)argc + 1, sizeof(char *));
  C.groups = calloc((size_t)argc + 1, sizeof(char *));
  if (!C.pos || !C.groups) {
    cli_err("out of memory");
    return CLI_EXIT_FAIL;
  }
  int i = 1;
  if (parse_args(NULL, argc, argv, &i, &g, NULL, 1)) return CLI_EXIT_USAGE;
  if (i >= argc) {
    if (g.help) return print_help(usage_main);
    usage_error(NULL, "missing command");
    return CLI_EXIT_USAGE;
  }
  const char *name = argv[i++];
  if (strcmp(name, "help") == 0) {
    if (i < argc && find_command(argv[i])) return print_help(find_command(argv[i])->usage);
    return print_help(usage_main);
  }
  const command_def_t *def = find_command(name);
  if (!def) {
    usage_error(NULL, "unknown command '%s'", name);
    return CLI_EXIT_USAGE;
  }
  if (parse_args(name, argc, argv, &i, &g, def->opts, 0)) return CLI_EXIT_USAGE;
  if (g.help) return print_help(def->usage);

  /* Positionals and required options. */
  if (C.npos < def->min_pos) {
    usage_error(name, "expected %s", def->pos_names);
    return CLI_EXIT_USAGE;
  }
  if (C.npos > def->max_pos) {
    usage_error(name, "unexpected argument '%s'", C.pos[def->max_pos]);
    return CLI_EXIT_USAGE;
  }
  for (size_t k = 0; k < C.npos; k++) {
    if (!C.pos[k][0]) {
      usage_error(name, "empty %s", k == 0 ? "group name" : k == 1 ? "ID" : "type");
      return CLI_EXIT_USAGE;
    }
  }
  if (def->cmd.start == register_start) {
    if (!C.id || !*C.id || !C.type || !*C.type || !C.port) {
      usage_error(name, "--id, --type and --port are required");
      return CLI_EXIT_USAGE;
    }
    const char *what[2] = {"node ID", "exporter type"}, *val[2] = {C.id, C.type};
    for (int k = 0; k < 2; k++) {
      if (strchr(val[k], '/') || strcmp(val[k], ".") == 0 || strcmp(val[k], "..") == 0) {
        usage_error(name, "%s must not contain '/' or be '.' or '..'", what[k]);
        return CLI_EXIT_USAGE;
      }
    }
    if (!C.path) C.path = "/metrics";
    if (!*C.path) {
      usage_error(name, "--path cannot be empty");
      return CLI_EXIT_USAGE;
    }
    if (!C.ttl_ms) C.ttl_ms = 30000;
  }
  if (def->cmd.start == configure_start) {
    if (C.group_password_file && !C.group_user) {
      usage_error(name, "--group-password-file needs --group-user");
      return CLI_EXIT_USAGE;
    }
  }
  if (C.out && !*C.out) {
    usage_error(name, "--out cannot be empty");
    return CLI_EXIT_USAGE;
  }

  /* Globals. */
  app->timeout_ms = 5000;
  if (g.timeout && cli_parse_duration(g.timeout, &app->timeout_ms)) {
    usage_error(NULL, "invalid duration for --timeout: '%s' (e.g. 500ms, 5s, 1m)", g.timeout);
    return CLI_EXIT_USAGE;
  }
  const char *env_ep = getenv("ETCDREG_ENDPOINTS");
  app->endpoints_text = g.endpoints ? g.endpoints : env_ep && *env_ep ? env_ep : "127.0.0.1:2379";
  if (split_endpoints(app, app->endpoints_text)) {
    usage_error(NULL, "invalid endpoint list '%s'", app->endpoints_text);
    return CLI_EXIT_USAGE;
  }
  app->base = g.base ? g.base : "/services";
  app->json = g.json;
  app->user = g.user;
  char err[512];
  if (g.password_file && !g.user) {
    usage_error(NULL, "--password-file needs --user");
    return CLI_EXIT_USAGE;
  }
  if (g.user) {
    if (!*g.user) {
      usage_error(NULL, "--user cannot be empty");
      return CLI_EXIT_USAGE;
    }
    if (g.password_file) {
      if (cli_read_secret_file(g.password_file, &app->password, err, sizeof(err))) {
        usage_error(NULL, "%s", err);
        return CLI_EXIT_USAGE;
      }
    } else {
      const char *env_pw = getenv("ETCDREG_PASSWORD");
      if (!env_pw) {
        usage_error(NULL, "--user needs --password-file F or the environment variable ETCDREG_PASSWORD");
        return CLI_EXIT_USAGE;
      }
      if (!(app->password = strdup(env_pw))) {
        cli_err("out of memory");
        return CLI_EXIT_FAIL;
      }
    }
  }
  if (C.group_password_file && cli_read_secret_file(C.group_password_file, &C.group_password, err, sizeof(err))) {
    usage_error(name, "%s", err);
    return CLI_EXIT_USAGE;
  }

  app->cmd = &def->cmd;
  if (!def->cmd.start) { /* prometheus-sd */
    cli_promsd_args_t pa = {C.out, C.groups, C.ngroups};
    if (cli_promsd_init(app, &pa)) {
      cli_err("out of memory");
      return CLI_EXIT_FAIL;
    }
    app->cmd = &cli_promsd_command;
  }

  /* Run. */
  signal(SIGPIPE, SIG_IGN);
  if (uv_loop_init(&app->loop)) {
    cli_err("cannot initialise the event loop");
    return CLI_EXIT_FAIL;
  }
  if (def->long_running) watch_signals(app);
  uv_timer_init(&app->loop, &app->open_timer);
  app->open_timer.data = app;
  uv_timer_start(&app->open_timer, on_open_timeout, app->timeout_ms + 1000, 0);
  app->open_timer_on = 1;
  etcdreg_registry_options_t ro = {.endpoints = (const char *const *)app->endpoints,
                                   .base = app->base,
                                   .username = app->user,
                                   .password = app->password,
                                   .default_timeout_ms = app->timeout_ms,
                                   .max_retries = 1};
  int rv = etcdreg_registry_connect(&app->loop, &ro, on_open, app, &app->reg);
  if (rv) {
    app->reg = NULL;
    const char *le = etcdreg_registry_last_error();
    if (rv == ETCDREG_EINVAL) cli_fail(app, CLI_EXIT_USAGE, "%s", le && *le ? le : "invalid options");
    else cli_fail(app, CLI_EXIT_FAIL, "cannot open the registry: %s", etcdreg_strerror(rv));
  }
  uv_run(&app->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&app->loop) != 0) {
    uv_run(&app->loop, UV_RUN_DEFAULT);
    uv_loop_close(&app->loop);
  }
  return app->exit_code;
}

int main(int argc, char **argv) {
  cli_app_t app;
  memset(&app, 0, sizeof(app));
  int code = run(argc, argv, &app);
  free_app(&app);
  return code;
}
