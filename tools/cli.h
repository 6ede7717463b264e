/* cli.h - shared pieces of the etcdreg command-line tool (tools/etcdreg.c).
 *
 * The tool uses the library's public API only, everything on one libuv loop. */
#ifndef ETCDREG_CLI_H
#define ETCDREG_CLI_H

#include <etcdreg.h>
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

/* ---- labels given on the command line ---- */

typedef struct cli_labels {
  etcdreg_label_t *items; /* keys and values malloc'd */
  size_t count, cap;
} cli_labels_t;

/* Parses "k=v" and appends it; on error fills err and returns -1. */
int cli_labels_add(cli_labels_t *l, const char *kv, const char *opt, char *err, size_t errlen);
void cli_labels_free(cli_labels_t *l);

/* ---- small parsers ---- */

/* "500ms", "5s", "1m", "2h", "1m30s" -> milliseconds (> 0). 0 or -1. */
int cli_parse_duration(const char *s, uint64_t *ms);
/* A decimal integer in [min, max]. 0 or -1. */
int cli_parse_int(const char *s, long min, long max, long *out);
/* Reads a secret from a file (one trailing "\n" or "\r\n" dropped). The secret is never
 * copied into err. 0 or -1. */
int cli_read_secret_file(const char *path, char **out, char *err, size_t errlen);

/* ---- formatting ---- */

#define CLI_TIME_BUF 48
/* RFC 3339 with nanoseconds, UTC, as Go's time.Time marshals ("0001-01-01T00:00:00Z"
 * for 0). */
void cli_time_format(int64_t unix_ns, char *buf);
/* The host of a node for scraping: its "address" label if non-empty, else its "host"
 * label if non-empty, else its ID. */
const char *cli_node_host(const etcdreg_node_t *n);
/* "host:port", with an IPv6 literal host (two or more ':', no '[') in brackets. */
void cli_node_hostport(const etcdreg_node_t *n, char *buf, size_t len);
/* Value of a label, or NULL. */
const char *cli_label_get(const etcdreg_label_t *l, size_t n, const char *key);

/* The Go library's Node JSON (id, exporter_type, port, metrics_path, labels, status,
 * last_seen). NULL on ENOMEM. */
json_t *cli_node_json(const etcdreg_node_t *n);
/* The Go library's ServiceGroupData JSON (name, spec{username, password, common_labels},
 * created), with a non-empty password replaced by "***". */
json_t *cli_group_json(const etcdreg_group_t *g);
/* Prints `v` on one line (compact) or indented, then "\n"; takes the reference. 0 or -1. */
int cli_print_json(FILE *f, json_t *v, int compact);

/* ---- the application ---- */

typedef struct cli_app cli_app_t;

typedef struct cli_command {
  const char *name;
  void (*start)(cli_app_t *app);   /* the registry is open */
  void (*stop)(cli_app_t *app);    /* SIGINT or SIGTERM (first one); NULL: finish(0) */
  void (*cleanup)(cli_app_t *app); /* close the command's own handles (from cli_finish) */
} cli_command_t;

struct cli_app {
  uv_loop_t loop;
  /* global options */
  char **endpoints; /* NULL-terminated */
  const char *endpoints_text;
  const char *base;
  const char *user;
  const char *password_file;
  char *password;
  uint64_t timeout_ms;
  int json;
  /* runtime */
  const cli_command_t *cmd;
  void *cmd_state;
  etcdreg_registry_t *reg;
  int opened;
  int finishing;
  int exit_code;
  int signals_on, open_timer_on;
  int signal_count;
  uv_signal_t sigint, sigterm;
  uv_timer_t open_timer;
};

/* Ends the run: closes the command's handles, the signal handlers and the registry; the
 * loop then drains and main returns `code` (the first code given wins). */
void cli_finish(cli_app_t *app, int code);
/* Prints "etcdreg: <message>" on stderr and finishes with `code`. */
void cli_fail(cli_app_t *app, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prints "etcdreg: <message>" on stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Flushes stdout; a failure (e.g. a closed pipe) finishes the run. 0 or -1. */
int cli_flush(cli_app_t *app);

/* ---- prometheus-sd (cli_promsd.c) ---- */

/* Parses the command's own arguments (argv[0] is the first after "prometheus-sd").
 * Returns 0, or CLI_EXIT_USAGE after printing the error. */
typedef struct cli_promsd_args {
  const char *out;
  const char **groups;
  size_t group_count;
} cli_promsd_args_t;

extern const cli_command_t cli_promsd_command;
/* Sets up the command's state from the parsed arguments (copied). 0 or -1 (ENOMEM). */
int cli_promsd_init(cli_app_t *app, const cli_promsd_args_t *args);
/* Frees the command's state (after the loop has ended); safe when never initialised. */
void cli_promsd_free(cli_app_t *app);

#endif
