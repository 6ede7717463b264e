/* The etcdreg command-line tool run as processes against a real etcd: every command,
 * --json output parsed, register + SIGTERM deregisters, prometheus-sd --out following a
 * register, a deregister and an etcd restart, bad arguments, unreachable endpoints, and
 * passwords never appearing in any output (every output of every run is checked). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"

#ifndef ETCDREG_CLI_PATH
#error "ETCDREG_CLI_PATH must be defined (the etcdreg executable)"
#endif

extern char **environ;

#define ROOT_SECRET "Root-Secret-Pw-4711"
#define GROUP_SECRET "Group-Secret-Pw-0815"
#define WRONG_SECRET "Wrong-Secret-Pw-1234"
static const char *const g_secrets[] = {ROOT_SECRET, GROUP_SECRET, WRONG_SECRET, NULL};

static char g_dir[256];   /* temp dir of the suite */
static int g_seq;         /* output file counter */

/* ------------------------------------------------------------------------------------ */
/* Processes                                                                            */

typedef struct {
  pid_t pid;
  char out_path[300], err_path[300];
} proc_t;

#define MAX_LIVE 32
static pid_t g_live[MAX_LIVE];

static void live_add(pid_t p) {
  for (int i = 0; i < MAX_LIVE; i++)
    if (!g_live[i]) {
      g_live[i] = p;
      return;
    }
}

static void live_del(pid_t p) {
  for (int i = 0; i < MAX_LIVE; i++)
    if (g_live[i] == p) g_live[i] = 0;
}

static void kill_leftovers(void) {
  for (int i = 0; i < MAX_LIVE; i++) {
    if (!g_live[i]) continue;
    kill(g_live[i], SIGKILL);
    waitpid(g_live[i], NULL, 0);
    g_live[i] = 0;
  }
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  }
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  size_t n;
  while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 2) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf) buf[len] = 0;
  return buf;
}

/* Every output of the CLI is checked for the passwords. */
static void check_no_secret(const char *what, const char *text) {
  for (int i = 0; g_secrets[i]; i++)
    if (text && strstr(text, g_secrets[i])) fail_msg("a password appears in %s:\n%s", what, text);
}

/* Environment: ours without ETCDREG_*, plus `extra` ("K=V" strings, NULL-terminated). */
static char **make_env(const char *const *extra) {
  size_t n = 0, m = 0;
  while (environ[n]) n++;
  while (extra && extra[m]) m++;
  char **env = calloc(n + m + 1, sizeof(char *));
  size_t w = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "ETCDREG_", 8) != 0) env[w++] = environ[i];
  for (size_t i = 0; i < m; i++) env[w++] = (char *)extra[i];
  env[w] = NULL;
  return env;
}

/* Starts the CLI with args (NULL-terminated, without argv[0]). */
static void proc_start(proc_t *p, const char *const *env_extra, const char *const *args) {
  size_t n = 0;
  while (args[n]) n++;
  char **argv = calloc(n + 2, sizeof(char *));
  argv[0] = (char *)ETCDREG_CLI_PATH;
  for (size_t i = 0; i < n; i++) argv[i + 1] = (char *)args[i];
  int seq = ++g_seq;
  snprintf(p->out_path, sizeof(p->out_path), "%s/p%d.out", g_dir, seq);
  snprintf(p->err_path, sizeof(p->err_path), "%s/p%d.err", g_dir, seq);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, p->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, p->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  sigset_t none, def;
  sigemptyset(&none);
  sigemptyset(&def);
  sigaddset(&def, SIGINT);
  sigaddset(&def, SIGTERM);
  sigaddset(&def, SIGPIPE);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &def);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  char **env = make_env(env_extra);
  int rv = posix_spawn(&p->pid, ETCDREG_CLI_PATH, &fa, &at, argv, env);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  free(env);
  free(argv);
  if (rv) fail_msg("posix_spawn %s: %s", ETCDREG_CLI_PATH, strerror(rv));
  live_add(p->pid);
}

/* Waits for the exit (fails after timeout_ms); the exit code, or 128 + signal. */
static int proc_wait(proc_t *p, uint64_t timeout_ms) {
  uint64_t deadline = now_ms() + timeout_ms;
  int st = 0;
  for (;;) {
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) break;
    if (r < 0 && errno != EINTR) fail_msg("waitpid: %s", strerror(errno));
    if (now_ms() > deadline) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, NULL, 0);
      live_del(p->pid);
      static char held[16384];
      char *o = read_file(p->out_path), *e = read_file(p->err_path);
      snprintf(held, sizeof(held), "stdout:\n%s\nstderr:\n%s", o ? o : "", e ? e : "");
      free(o);
      free(e);
      fail_msg("etcdreg did not exit within %llu ms\n%s", (unsigned long long)timeout_ms, held);
    }
    sleep_ms(20);
  }
  live_del(p->pid);
  p->pid = 0;
  char *o = read_file(p->out_path), *e = read_file(p->err_path);
  check_no_secret("stdout", o);
  check_no_secret("stderr", e);
  free(o);
  free(e);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Polls `path` until it contains `needle` (fails after timeout_ms). */
static void wait_contains(const char *path, const char *needle, uint64_t timeout_ms) {
  uint64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    char *t = read_file(path);
    int ok = t && strstr(t, needle);
    if (ok || now_ms() > deadline) {
      static char held[16384];
      snprintf(held, sizeof(held), "%s", t ? t : "(nothing)");
      free(t);
      if (!ok) fail_msg("timed out waiting for \"%s\" in %s; it holds:\n%s", needle, path, held);
      return;
    }
    free(t);
    sleep_ms(50);
  }
}

static int count_occurrences(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

typedef struct {
  int status;
  char *out, *err;
  uint64_t ms;
} run_t;

static void run_free(run_t *r) {
  free(r->out);
  free(r->err);
  memset(r, 0, sizeof(*r));
}

/* Runs the CLI to completion (60 s at most). */
static void run_argv(run_t *r, const char *const *env, const char *const *args) {
  run_free(r);
  proc_t p;
  uint64_t t0 = now_ms();
  proc_start(&p, env, args);
  r->status = proc_wait(&p, 60000);
  r->ms = now_ms() - t0;
  r->out = read_file(p.out_path);
  r->err = read_file(p.err_path);
  if (!r->out) r->out = strdup("");
  if (!r->err) r->err = strdup("");
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
/* Against the suite's etcd. */
#define CLI(r, ...) run_argv((r), NULL, ARGS("--endpoints", g_etcd.endpoint, __VA_ARGS__))
#define CLI_ENV(r, env, ...) run_argv((r), (env), ARGS("--endpoints", g_etcd.endpoint, __VA_ARGS__))
#define START(p, ...) proc_start((p), NULL, ARGS("--endpoints", g_etcd.endpoint, __VA_ARGS__))

static void expect_ok(const run_t *r) {
  if (r->status != 0) fail_msg("exit %d\nstdout:\n%s\nstderr:\n%s", r->status, r->out, r->err);
}

/* One line "etcdreg: ..." on stderr, nothing on stdout. */
static void expect_error_line(const run_t *r, int status) {
  if (r->status != status)
    fail_msg("exit %d, expected %d\nstdout:\n%s\nstderr:\n%s", r->status, status, r->out, r->err);
  if (strncmp(r->err, "etcdreg: ", 9) != 0 || count_occurrences(r->err, "\n") != 1 ||
      r->err[strlen(r->err) - 1] != '\n')
    fail_msg("expected one line \"etcdreg: ...\" on stderr, got:\n%s", r->err);
  if (r->out[0]) fail_msg("expected nothing on stdout, got:\n%s", r->out);
}

static json_t *parse_json(const char *text) {
  json_error_t e;
  json_t *v = json_loads(text, 0, &e);
  if (!v) fail_msg("not JSON (%s, line %d):\n%s", e.text, e.line, text);
  return v;
}

static const char *jstr(json_t *o, const char *path) {
  /* "a.b.c" */
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", path);
  json_t *cur = o;
  for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok; tok = strtok_r(NULL, ".", &save))
    cur = json_object_get(cur, tok);
  if (!json_is_string(cur)) fail_msg("%s is not a string", path);
  return json_string_value(cur);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* Keys under `key` (prefix) in etcd, through the library. */
static size_t kv_count(const char *key, int prefix) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  itest_result_t r = {0};
  etcdreg_range_opts_t o = {.prefix = prefix};
  itest_range(&loop, c, key, &o, &r);
  assert_int_equal(r.status, 0);
  size_t n = r.kv_count;
  itest_result_reset(&r);
  itest_close(&loop, c);
  return n;
}

static char *kv_value(const char *key) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  itest_result_t r = {0};
  itest_range(&loop, c, key, NULL, &r);
  assert_int_equal(r.status, 0);
  char *v = r.kv_count ? strdup(r.kvs[0].value) : NULL;
  itest_result_reset(&r);
  itest_close(&loop, c);
  return v;
}

static void wait_kv_count(const char *key, int prefix, size_t want, uint64_t timeout_ms) {
  uint64_t deadline = now_ms() + timeout_ms;
  size_t n;
  while ((n = kv_count(key, prefix)) != want) {
    if (now_ms() > deadline) fail_msg("%s: %zu keys, expected %zu", key, n, want);
    sleep_ms(100);
  }
}

/* ------------------------------------------------------------------------------------ */
/* Fixtures                                                                             */

static int suite_dir(void) {
  snprintf(g_dir, sizeof(g_dir), "/tmp/etcdreg-cli-XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static void suite_dir_remove(void) {
  if (!g_dir[0]) return;
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
  g_dir[0] = 0;
}

static int plain_up(void **state) {
  (void)state;
  if (suite_dir()) return -1;
  return th_etcd_start(&g_etcd, NULL) == 0 ? 0 : -1; /* plain: the CLI has no TLS options */
}

static int auth_up(void **state) {
  (void)state;
  if (suite_dir()) return -1;
  if (th_etcd_start(&g_etcd, NULL) != 0) return -1;
  const char *steps[][12] = {
      {"user", "add", "root:" ROOT_SECRET, NULL},
      {"auth", "enable", NULL},
  };
  for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
    if (th_etcdctl(&g_etcd, steps[i]) != 0) return -1;
  return 0;
}

static int suite_down(void **state) {
  (void)state;
  kill_leftovers();
  th_etcd_stop(&g_etcd);
  suite_dir_remove();
  return 0;
}

static int test_teardown(void **state) {
  (void)state;
  kill_leftovers();
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Help and bad arguments                                                               */

static void test_help(void **state) {
  (void)state;
  run_t r = {0};
  run_argv(&r, NULL, ARGS("--help"));
  expect_ok(&r);
  assert_non_null(strstr(r.out, "usage: etcdreg"));
  assert_non_null(strstr(r.out, "prometheus-sd"));
  assert_string_equal(r.err, "");
  const char *cmds[] = {"groups", "group", "nodes", "configure", "register", "deregister", "watch", "prometheus-sd"};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    run_argv(&r, NULL, ARGS(cmds[i], "--help"));
    expect_ok(&r);
    char want[64];
    snprintf(want, sizeof(want), "usage: etcdreg [GLOBAL OPTIONS] %s", cmds[i]);
    if (!strstr(r.out, want)) fail_msg("%s --help:\n%s", cmds[i], r.out);
    run_argv(&r, NULL, ARGS("help", cmds[i]));
    expect_ok(&r);
    assert_non_null(strstr(r.out, want));
  }
  /* The host rule is documented. */
  run_argv(&r, NULL, ARGS("prometheus-sd", "-h"));
  expect_ok(&r);
  assert_non_null(strstr(r.out, "'address' label"));
  assert_non_null(strstr(r.out, "else the node's ID"));
  run_free(&r);
}

static void test_bad_arguments(void **state) {
  (void)state;
  char gpw[300];
  snprintf(gpw, sizeof(gpw), "%s/gpw-bad", g_dir);
  write_text(gpw, GROUP_SECRET "\n");
  const char *ep = g_etcd.endpoint;
  const char *const *cases[] = {
      ARGS("--endpoints", ep),
      ARGS("--endpoints", ep, "bogus"),
      ARGS("--endpoints", ep, "--bogus", "groups"),
      ARGS("--endpoints", ep, "groups", "-x"),
      ARGS("--endpoints", ep, "groups", "extra"),
      ARGS("--endpoints", ep, "group"),
      ARGS("--endpoints", ep, "nodes"),
      ARGS("--endpoints", ep, "deregister", "g", "id"),
      ARGS("--endpoints", ep, "watch", "a", "b"),
      ARGS("--endpoints", ep, "register", "g"),
      ARGS("--endpoints", ep, "register", "g", "--id", "a", "--type", "t"),
      ARGS("--endpoints", ep, "register", "g", "--id", "a", "--type", "t", "--port", "0"),
      ARGS("--endpoints", ep, "register", "g", "--id", "a", "--type", "t", "--port", "65536"),
      ARGS("--endpoints", ep, "register", "g", "--id", "a", "--type", "t", "--port", "http"),
      ARGS("--endpoints", ep, "register", "g", "--id", "a", "--type", "t", "--port", "80", "--ttl", "10"),
      ARGS("--endpoints", ep, "register", "g", "--id", "a", "--type", "t", "--port", "80", "--ttl"),
      ARGS("--endpoints", ep, "register", "g", "--id", "a/b", "--type", "t", "--port", "80"),
      ARGS("--endpoints", ep, "register", "g", "--id", "a", "--type", "t", "--port", "80", "--label", "x"),
      ARGS("--endpoints", ep, "configure", "g", "--label", "novalue"),
      ARGS("--endpoints", ep, "configure", "g", "--label", "=v"),
      ARGS("--endpoints", ep, "configure", "g", "--label", "a=1", "--label", "a=2"),
      ARGS("--endpoints", ep, "configure", "g", "--group-password-file", gpw),
      ARGS("--endpoints", ep, "configure", "g", "--group-user", "u", "--group-password-file", "/nonexistent/pw"),
      ARGS("--endpoints", ep, "configure", "g", "--group-password=" GROUP_SECRET),
      ARGS("--endpoints", ep, "--password", ROOT_SECRET, "groups"),
      ARGS("--endpoints", ep, "--password=" ROOT_SECRET, "groups"),
      ARGS("--endpoints", ep, "--user", "root", "groups"), /* no password anywhere */
      ARGS("--endpoints", ep, "--password-file", gpw, "groups"), /* no --user */
      ARGS("--endpoints", ep, "--user", "root", "--password-file", "/nonexistent/pw", "groups"),
      ARGS("--endpoints", ep, "--timeout", "5x", "groups"),
      ARGS("--endpoints", ep, "--timeout", "0s", "groups"),
      ARGS("--endpoints", ep, "--json=yes", "groups"),
      ARGS("--endpoints", ",", "groups"),
      ARGS("--endpoints", ep, "--base", "/", "groups"),
      ARGS("--endpoints", ep, "group", "bad/name"),
      ARGS("--endpoints", ep, "nodes", ""),
      ARGS("--endpoints", ep, "prometheus-sd", "--out"),
      ARGS("--endpoints", ep, "prometheus-sd", "--group", "bad/name"),
      ARGS("--endpoints", ep, "prometheus-sd", "extra"),
  };
  run_t r = {0};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    run_argv(&r, NULL, cases[i]);
    if (r.status != 2 || strncmp(r.err, "etcdreg: ", 9) || count_occurrences(r.err, "\n") != 1 || r.out[0]) {
      fprintf(stderr, "case %zu:", i);
      for (size_t k = 0; cases[i][k]; k++) fprintf(stderr, " %s", cases[i][k]);
      fprintf(stderr, "\n");
    }
    expect_error_line(&r, 2);
  }
  run_free(&r);
}

/* ------------------------------------------------------------------------------------ */
/* Unreachable etcd                                                                     */

static void test_unreachable(void **state) {
  (void)state;
  run_t r = {0};
  /* Nothing listens: refused at once. */
  char ep[64];
  snprintf(ep, sizeof(ep), "127.0.0.1:%d", th_closed_port());
  const char *cmds[][4] = {{"groups", NULL}, {"nodes", "g", NULL}, {"watch", NULL},
                           {"register", "g", NULL}, {"prometheus-sd", NULL}};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    const char *args[20] = {"--endpoints", ep, "--timeout", "2s"};
    size_t n = 4;
    for (size_t k = 0; cmds[i][k]; k++) args[n++] = cmds[i][k];
    if (strcmp(cmds[i][0], "register") == 0) {
      const char *more[] = {"--id", "a", "--type", "t", "--port", "80"};
      for (size_t k = 0; k < 6; k++) args[n++] = more[k];
    }
    args[n] = NULL;
    run_argv(&r, NULL, args);
    expect_error_line(&r, 1);
    assert_non_null(strstr(r.err, "cannot connect to etcd at 127.0.0.1:"));
    if (r.ms > 2000 + 1500) fail_msg("%s took %llu ms with --timeout 2s", cmds[i][0], (unsigned long long)r.ms);
  }

  /* A listener that never answers: the timeout decides. */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(s, 16), 0);
  socklen_t al = sizeof(a);
  getsockname(s, (struct sockaddr *)&a, &al);
  snprintf(ep, sizeof(ep), "127.0.0.1:%d", ntohs(a.sin_port));
  run_argv(&r, NULL, ARGS("--endpoints", ep, "--timeout", "1s", "groups"));
  expect_error_line(&r, 1);
  assert_non_null(strstr(r.err, "cannot connect to etcd"));
  if (r.ms < 800 || r.ms > 1000 + 1500) fail_msg("took %llu ms with --timeout 1s", (unsigned long long)r.ms);
  run_argv(&r, NULL, ARGS("--endpoints", ep, "--timeout", "1500ms", "watch"));
  expect_error_line(&r, 1);
  if (r.ms > 1500 + 1500) fail_msg("watch took %llu ms with --timeout 1500ms", (unsigned long long)r.ms);
  close(s);
  run_free(&r);
}

/* ------------------------------------------------------------------------------------ */
/* configure, group, groups                                                             */

static void test_configure_group_groups(void **state) {
  (void)state;
  char gpw[300];
  snprintf(gpw, sizeof(gpw), "%s/gpw", g_dir);
  write_text(gpw, GROUP_SECRET "\n");
  run_t r = {0};
  CLI(&r, "configure", "cfg-a", "--label", "env=prod", "--label", "team=core", "--group-user", "bob",
      "--group-password-file", gpw);
  expect_ok(&r);
  assert_non_null(strstr(r.out, "configured group cfg-a"));
  assert_non_null(strstr(r.out, "password: ***"));

  /* Stored as the Go library stores it (the password in plain text), never shown. */
  char *stored = kv_value("/services/cfg-a");
  assert_non_null(stored);
  assert_non_null(strstr(stored, "\"password\":\"" GROUP_SECRET "\""));
  free(stored);

  CLI(&r, "group", "cfg-a");
  expect_ok(&r);
  assert_non_null(strstr(r.out, "name: cfg-a\n"));
  assert_non_null(strstr(r.out, "username: bob\n"));
  assert_non_null(strstr(r.out, "password: ***\n"));
  assert_non_null(strstr(r.out, "common_labels: env=prod team=core\n"));

  CLI(&r, "group", "cfg-a", "--json");
  expect_ok(&r);
  json_t *g = parse_json(r.out);
  assert_string_equal(jstr(g, "name"), "cfg-a");
  assert_string_equal(jstr(g, "spec.username"), "bob");
  assert_string_equal(jstr(g, "spec.password"), "***");
  assert_string_equal(jstr(g, "spec.common_labels.env"), "prod");
  assert_string_equal(jstr(g, "spec.common_labels.team"), "core");
  assert_true(strlen(jstr(g, "created")) >= 20);
  json_decref(g);

  /* --json before the command, and the same through the global option position. */
  CLI(&r, "configure", "cfg-b", "--json");
  expect_ok(&r);
  g = parse_json(r.out);
  assert_string_equal(jstr(g, "name"), "cfg-b");
  assert_string_equal(jstr(g, "spec.password"), "");
  assert_null(json_object_get(json_object_get(g, "spec"), "common_labels"));
  json_decref(g);

  CLI(&r, "groups");
  expect_ok(&r);
  assert_non_null(strstr(r.out, "cfg-a\ncfg-b\n"));
  run_argv(&r, NULL, ARGS("--json", "--endpoints", g_etcd.endpoint, "groups"));
  expect_ok(&r);
  json_t *a = parse_json(r.out);
  assert_true(json_is_array(a));
  int seen = 0;
  for (size_t i = 0; i < json_array_size(a); i++) {
    const char *n = json_string_value(json_array_get(a, i));
    if (n && (strcmp(n, "cfg-a") == 0 || strcmp(n, "cfg-b") == 0)) seen++;
    if (i) assert_true(strcmp(json_string_value(json_array_get(a, i - 1)), n) < 0); /* sorted */
  }
  assert_int_equal(seen, 2);
  json_decref(a);

  /* ETCDREG_ENDPOINTS is the default endpoint list. */
  char envep[128];
  snprintf(envep, sizeof(envep), "ETCDREG_ENDPOINTS=%s", g_etcd.endpoint);
  run_argv(&r, ARGS(envep), ARGS("group", "cfg-a"));
  expect_ok(&r);

  /* Reconfiguring replaces the spec: the credentials go. */
  CLI(&r, "configure", "cfg-a", "--label", "env=staging");
  expect_ok(&r);
  CLI(&r, "--json", "group", "cfg-a");
  expect_ok(&r);
  g = parse_json(r.out);
  assert_string_equal(jstr(g, "spec.username"), "");
  assert_string_equal(jstr(g, "spec.password"), "");
  assert_string_equal(jstr(g, "spec.common_labels.env"), "staging");
  json_decref(g);

  CLI(&r, "group", "no-such-group");
  expect_error_line(&r, 1);
  assert_non_null(strstr(r.err, "not found"));
  run_free(&r);
}

/* ------------------------------------------------------------------------------------ */
/* register, nodes, deregister                                                          */

static void test_register_nodes_sigterm(void **state) {
  (void)state;
  run_t r = {0};
  CLI(&r, "configure", "reg-a", "--label", "env=prod", "--label", "team=core");
  expect_ok(&r);
  proc_t p1, p2;
  START(&p1, "register", "reg-a", "--id", "n1", "--type", "node_exporter", "--port", "9100", "--label",
        "address=10.0.0.1", "--label", "env=staging", "--ttl", "5s");
  START(&p2, "--json", "register", "reg-a", "--id", "n2", "--type", "node_exporter", "--port", "9101", "--path",
        "/m", "--ttl", "5s");
  wait_contains(p1.out_path, "registered reg-a n1/node_exporter 10.0.0.1:9100 /metrics", 20000);
  wait_contains(p2.out_path, "\"event\":\"registered\"", 20000);

  CLI(&r, "nodes", "reg-a");
  expect_ok(&r);
  assert_non_null(strstr(r.out, "n1/node_exporter 10.0.0.1:9100 /metrics healthy last_seen="));
  assert_non_null(strstr(r.out, "n2/node_exporter n2:9101 /m healthy"));
  assert_non_null(strstr(r.out, " env=staging")); /* node labels win */
  assert_true(strstr(r.out, "n1/") < strstr(r.out, "n2/"));

  CLI(&r, "nodes", "reg-a", "--json");
  expect_ok(&r);
  json_t *a = parse_json(r.out);
  assert_int_equal(json_array_size(a), 2);
  json_t *n1 = json_array_get(a, 0), *n2 = json_array_get(a, 1);
  assert_string_equal(jstr(n1, "id"), "n1");
  assert_string_equal(jstr(n1, "exporter_type"), "node_exporter");
  assert_int_equal(json_integer_value(json_object_get(n1, "port")), 9100);
  assert_string_equal(jstr(n1, "metrics_path"), "/metrics");
  assert_string_equal(jstr(n1, "labels.address"), "10.0.0.1");
  assert_string_equal(jstr(n1, "labels.env"), "staging");
  assert_string_equal(jstr(n1, "labels.team"), "core"); /* merged common label */
  assert_string_equal(jstr(n1, "status"), "healthy");
  assert_true(strchr(jstr(n1, "last_seen"), 'T') != NULL);
  assert_string_equal(jstr(n2, "id"), "n2");
  assert_string_equal(jstr(n2, "metrics_path"), "/m");
  assert_string_equal(jstr(n2, "labels.env"), "prod");
  json_decref(a);

  /* The registered line of --json is one JSON object. */
  char *o2 = read_file(p2.out_path);
  char *nl = strchr(o2, '\n');
  *nl = 0;
  json_t *ev = parse_json(o2);
  assert_string_equal(jstr(ev, "event"), "registered");
  assert_string_equal(jstr(ev, "group_name"), "reg-a");
  assert_string_equal(jstr(ev, "node.id"), "n2");
  assert_int_equal(json_integer_value(json_object_get(ev, "ttl_ms")), 5000);
  json_decref(ev);
  free(o2);

  /* SIGTERM and SIGINT deregister and exit 0. */
  assert_int_equal(kv_count("/services/reg-a/nodes/n1_node_exporter", 0), 1);
  kill(p1.pid, SIGTERM);
  assert_int_equal(proc_wait(&p1, 20000), 0);
  assert_int_equal(kv_count("/services/reg-a/nodes/n1_node_exporter", 0), 0);
  wait_contains(p1.out_path, "deregistered reg-a n1/node_exporter", 1000);
  kill(p2.pid, SIGINT);
  assert_int_equal(proc_wait(&p2, 20000), 0);
  assert_int_equal(kv_count("/services/reg-a/nodes/", 1), 0);
  wait_contains(p2.out_path, "\"event\":\"deregistered\"", 1000);
  /* The group stays (only an explicit node delete removes an empty group). */
  assert_int_equal(kv_count("/services/reg-a", 0), 1);
  run_free(&r);
}

static void test_reregistration_and_deregister(void **state) {
  (void)state;
  run_t r = {0};
  proc_t p;
  START(&p, "register", "dereg", "--id", "n1", "--type", "node_exporter", "--port", "9100", "--ttl", "30s");
  wait_contains(p.out_path, "registered dereg n1/node_exporter", 20000);
  assert_int_equal(kv_count("/services/dereg", 0), 1); /* register created the group */

  /* Deleted behind its back: the running registration puts it back, and says so. */
  CLI(&r, "deregister", "dereg", "n1", "node_exporter");
  expect_ok(&r);
  assert_string_equal(r.out, "deregistered dereg n1/node_exporter\n");
  uint64_t deadline = now_ms() + 20000;
  for (;;) {
    char *o = read_file(p.out_path);
    int n = count_occurrences(o, "registered dereg n1/node_exporter");
    free(o);
    if (n >= 2) break;
    if (now_ms() > deadline) fail_msg("no re-registration logged");
    sleep_ms(50);
  }
  wait_kv_count("/services/dereg/nodes/n1_node_exporter", 0, 1, 10000);

  /* Killed without deregistering: the key stays (30 s lease) until deregister. */
  kill(p.pid, SIGKILL);
  assert_int_equal(proc_wait(&p, 10000), 128 + SIGKILL);
  assert_int_equal(kv_count("/services/dereg/nodes/n1_node_exporter", 0), 1);
  CLI(&r, "--json", "deregister", "dereg", "n1", "node_exporter");
  expect_ok(&r);
  json_t *o = parse_json(r.out);
  assert_string_equal(jstr(o, "group_name"), "dereg");
  assert_string_equal(jstr(o, "id"), "n1");
  assert_string_equal(jstr(o, "exporter_type"), "node_exporter");
  json_decref(o);
  assert_int_equal(kv_count("/services/dereg/", 1), 0);
  assert_int_equal(kv_count("/services/dereg", 0), 0); /* the empty group went with it */
  /* Idempotent. */
  CLI(&r, "deregister", "dereg", "n1", "node_exporter");
  expect_ok(&r);
  run_free(&r);
}

/* ------------------------------------------------------------------------------------ */
/* watch                                                                                */

static void test_watch(void **state) {
  (void)state;
  run_t r = {0};
  proc_t wall, wgrp, reg;
  START(&wall, "watch");
  START(&wgrp, "watch", "wat", "--json");
  wait_contains(wall.err_path, "watching /services", 20000);
  wait_contains(wgrp.err_path, "watching /services/wat", 20000);

  START(&reg, "register", "wat", "--id", "n1", "--type", "node_exporter", "--port", "9200", "--label",
        "address=10.0.0.5", "--ttl", "5s");
  wait_contains(reg.out_path, "registered wat", 20000);
  CLI(&r, "configure", "wat", "--label", "team=x");
  expect_ok(&r);
  kill(reg.pid, SIGTERM);
  assert_int_equal(proc_wait(&reg, 20000), 0);

  wait_contains(wall.out_path, "delete wat n1/node_exporter 10.0.0.5:9200 /metrics address=10.0.0.5", 20000);
  wait_contains(wgrp.out_path, "\"type\":\"delete\"", 20000);
  char *t = read_file(wall.out_path);
  assert_non_null(strstr(t, "create wat config\n"));
  assert_non_null(strstr(t, "create wat n1/node_exporter 10.0.0.5:9200 /metrics address=10.0.0.5\n"));
  assert_non_null(strstr(t, "update wat config team=x\n"));
  free(t);

  /* One WatchEvent object per line. */
  t = read_file(wgrp.out_path);
  int creates = 0, deletes = 0, configs = 0;
  for (char *save = NULL, *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    json_t *ev = parse_json(line);
    assert_string_equal(jstr(ev, "group_name"), "wat");
    const char *type = jstr(ev, "type");
    json_t *node = json_object_get(ev, "node");
    if (node) {
      assert_string_equal(jstr(node, "id"), "n1");
      assert_int_equal(json_integer_value(json_object_get(node, "port")), 9200);
      assert_string_equal(jstr(node, "labels.address"), "10.0.0.5");
      if (strcmp(type, "create") == 0) creates++;
      if (strcmp(type, "delete") == 0) deletes++;
    } else {
      assert_string_equal(jstr(ev, "group.name"), "wat");
      assert_string_equal(jstr(ev, "group.spec.password"), "");
      configs++;
    }
    json_decref(ev);
  }
  free(t);
  assert_int_equal(creates, 1);
  assert_int_equal(deletes, 1);
  assert_true(configs >= 2); /* created by register, updated by configure */

  kill(wall.pid, SIGTERM);
  kill(wgrp.pid, SIGINT);
  assert_int_equal(proc_wait(&wall, 20000), 0);
  assert_int_equal(proc_wait(&wgrp, 20000), 0);
  run_free(&r);
}

/* ------------------------------------------------------------------------------------ */
/* prometheus-sd                                                                        */

static void test_prometheus_sd(void **state) {
  (void)state;
  run_t r = {0};
  CLI(&r, "configure", "psd", "--label", "env=prod");
  expect_ok(&r);
  proc_t p[4];
  START(&p[0], "register", "psd", "--id", "n1", "--type", "node_exporter", "--port", "9100", "--label",
        "address=10.0.0.1", "--label", "host=ignored", "--label", "my-label=x", "--label", "1abc=y", "--label",
        "a-b=first", "--label", "a_b=second", "--label", "group=not-this");
  START(&p[1], "register", "psd", "--id", "n2", "--type", "node_exporter", "--port", "9100", "--path", "/m",
        "--label", "host=h2.example");
  START(&p[2], "register", "psd", "--id", "n3", "--type", "blackbox", "--port", "9115");
  START(&p[3], "register", "psd", "--id", "n4", "--type", "node_exporter", "--port", "9100", "--label",
        "address=fd00::4");
  for (int i = 0; i < 4; i++) wait_contains(p[i].out_path, "registered psd", 20000);

  CLI(&r, "prometheus-sd", "--group", "psd");
  expect_ok(&r);
  char *first = strdup(r.out);
  json_t *a = parse_json(r.out);
  assert_true(json_is_array(a));
  assert_int_equal(json_array_size(a), 4);
  const char *want_targets[] = {"10.0.0.1:9100", "h2.example:9100", "n3:9115", "[fd00::4]:9100"};
  for (size_t i = 0; i < 4; i++) {
    json_t *tg = json_array_get(a, i);
    json_t *targets = json_object_get(tg, "targets");
    assert_int_equal(json_array_size(targets), 1);
    assert_string_equal(json_string_value(json_array_get(targets, 0)), want_targets[i]);
    assert_string_equal(jstr(tg, "labels.group"), "psd");
    assert_string_equal(jstr(tg, "labels.env"), "prod");
  }
  json_t *l1 = json_object_get(json_array_get(a, 0), "labels");
  assert_string_equal(jstr(l1, "__metrics_path__"), "/metrics");
  assert_string_equal(jstr(l1, "exporter_type"), "node_exporter");
  assert_string_equal(jstr(l1, "my_label"), "x");
  assert_string_equal(jstr(l1, "_1abc"), "y");
  assert_string_equal(jstr(l1, "a_b"), "first"); /* "a-b" sorts before "a_b": the first is kept */
  assert_string_equal(jstr(l1, "address"), "10.0.0.1");
  assert_null(json_object_get(l1, "my-label"));
  assert_null(json_object_get(l1, "a-b"));
  const char *k;
  json_t *v;
  json_object_foreach(l1, k, v) {
    assert_true((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= 'A' && k[0] <= 'Z') || k[0] == '_');
    for (const char *c = k; *c; c++)
      assert_true((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_');
  }
  assert_string_equal(jstr(json_array_get(a, 1), "labels.__metrics_path__"), "/m");
  assert_string_equal(jstr(json_array_get(a, 2), "labels.exporter_type"), "blackbox");
  json_decref(a);
  /* Collisions are reported on stderr. */
  assert_non_null(strstr(r.err, "label 'a_b' dropped"));
  assert_non_null(strstr(r.err, "label 'group' dropped"));

  /* Deterministic. */
  CLI(&r, "prometheus-sd", "--group", "psd", "--group", "psd");
  expect_ok(&r);
  assert_string_equal(r.out, first);
  free(first);

  /* Every group by default, sorted by group: psd's targets are in it. */
  CLI(&r, "prometheus-sd");
  expect_ok(&r);
  a = parse_json(r.out);
  size_t found = 0;
  const char *prev = "";
  for (size_t i = 0; i < json_array_size(a); i++) {
    const char *grp = jstr(json_array_get(a, i), "labels.group");
    assert_true(strcmp(prev, grp) <= 0);
    prev = grp;
    if (strcmp(grp, "psd") == 0) found++;
  }
  assert_int_equal(found, 4);
  json_decref(a);

  /* An empty group gives an empty list. */
  CLI(&r, "prometheus-sd", "--group", "no-such-group");
  expect_ok(&r);
  assert_string_equal(r.out, "[]\n");

  for (int i = 0; i < 4; i++) {
    kill(p[i].pid, SIGTERM);
    assert_int_equal(proc_wait(&p[i], 20000), 0);
  }
  run_free(&r);
}

/* The file's target list (parsed): n entries; the targets joined with ','. */
static int sd_file_targets(const char *path, char *buf, size_t len) {
  char *t = read_file(path);
  buf[0] = 0;
  if (!t) return -1;
  json_t *a = json_loads(t, 0, NULL);
  free(t);
  if (!json_is_array(a)) {
    json_decref(a);
    return -2; /* never a partial file */
  }
  int n = (int)json_array_size(a);
  for (size_t i = 0; i < json_array_size(a); i++) {
    const char *tg = json_string_value(json_array_get(json_object_get(json_array_get(a, i), "targets"), 0));
    size_t l = strlen(buf);
    snprintf(buf + l, len - l, "%s%s", l ? "," : "", tg ? tg : "?");
  }
  json_decref(a);
  return n;
}

static void wait_sd(const char *path, const char *want, uint64_t timeout_ms) {
  uint64_t deadline = now_ms() + timeout_ms;
  char buf[1024];
  for (;;) {
    int n = sd_file_targets(path, buf, sizeof(buf));
    if (n == -2) fail_msg("%s is not a JSON array", path);
    if (n >= 0 && strcmp(buf, want) == 0) return;
    if (now_ms() > deadline) fail_msg("%s: targets \"%s\", expected \"%s\"", path, buf, want);
    sleep_ms(50);
  }
}

static void test_prometheus_sd_out(void **state) {
  (void)state;
  char path[300], tmp[310];
  snprintf(path, sizeof(path), "%s/sd.json", g_dir);
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  proc_t sd, reg;
  START(&sd, "prometheus-sd", "--out", path, "--group", "out");
  wait_sd(path, "", 20000); /* written at once: [] */

  START(&reg, "register", "out", "--id", "n1", "--type", "node_exporter", "--port", "9100", "--label",
        "address=10.0.0.9", "--ttl", "5s");
  wait_sd(path, "10.0.0.9:9100", 30000);
  char *t = read_file(path);
  assert_non_null(strstr(t, "\"__metrics_path__\": \"/metrics\""));
  free(t);
  assert_int_equal(access(tmp, F_OK), -1); /* renamed into place */
  kill(reg.pid, SIGTERM);
  assert_int_equal(proc_wait(&reg, 20000), 0);
  wait_sd(path, "", 30000);

  /* etcd restarts: the tool reconnects, its watch resumes. */
  assert_int_equal(th_etcd_kill(&g_etcd, SIGKILL), 0);
  sleep_ms(500);
  assert_int_equal(th_etcd_restart(&g_etcd), 0);
  START(&reg, "register", "out", "--id", "n2", "--type", "node_exporter", "--port", "9100", "--ttl", "5s");
  wait_contains(reg.out_path, "registered out", 30000);
  wait_sd(path, "n2:9100", 60000);
  kill(reg.pid, SIGTERM);
  assert_int_equal(proc_wait(&reg, 20000), 0);
  wait_sd(path, "", 30000);

  kill(sd.pid, SIGTERM);
  assert_int_equal(proc_wait(&sd, 20000), 0);
  t = read_file(sd.out_path);
  assert_true(count_occurrences(t, "wrote ") >= 4);
  free(t);
}

/* etcd is down for longer than the TTL: every failed attempt is logged with its attempt
 * number and retry delay, the node is registered again once etcd is back, and SIGTERM
 * still deregisters. */
static void test_register_survives_outage(void **state) {
  (void)state;
  proc_t reg;
  START(&reg, "register", "outage", "--id", "n1", "--type", "node_exporter", "--port", "9100", "--ttl", "2s");
  wait_contains(reg.out_path, "registered outage n1/node_exporter", 20000);
  assert_int_equal(th_etcd_kill(&g_etcd, SIGKILL), 0);
  wait_contains(reg.err_path, "etcdreg: register outage n1/node_exporter: ", 20000);
  wait_contains(reg.err_path, "(attempt 2, retrying in ", 30000);
  assert_int_equal(th_etcd_restart(&g_etcd), 0);
  uint64_t deadline = now_ms() + 60000;
  for (;;) {
    char *o = read_file(reg.out_path);
    int n = count_occurrences(o, "registered outage n1/node_exporter");
    free(o);
    if (n >= 2) break;
    if (now_ms() > deadline) fail_msg("not registered again after etcd came back");
    sleep_ms(100);
  }
  assert_int_equal(kv_count("/services/outage/nodes/n1_node_exporter", 0), 1);
  kill(reg.pid, SIGTERM);
  assert_int_equal(proc_wait(&reg, 20000), 0);
  assert_int_equal(kv_count("/services/outage/nodes/n1_node_exporter", 0), 0);
}

/* ------------------------------------------------------------------------------------ */
/* Passwords (etcd with authentication)                                                 */

static void test_auth_passwords(void **state) {
  (void)state;
  char pw[300], gpw[300], wrong[300];
  snprintf(pw, sizeof(pw), "%s/root-pw", g_dir);
  snprintf(gpw, sizeof(gpw), "%s/group-pw", g_dir);
  snprintf(wrong, sizeof(wrong), "%s/wrong-pw", g_dir);
  write_text(pw, ROOT_SECRET "\n");
  write_text(gpw, GROUP_SECRET);
  write_text(wrong, WRONG_SECRET "\n");
  run_t r = {0};

  /* --user with --password-file; the group password from a file too. */
  CLI(&r, "--user", "root", "--password-file", pw, "configure", "sec", "--label", "env=prod", "--group-user", "app",
      "--group-password-file", gpw);
  expect_ok(&r);
  assert_non_null(strstr(r.out, "password: ***"));
  CLI(&r, "--user", "root", "--password-file", pw, "--json", "configure", "sec", "--group-user", "app",
      "--group-password-file", gpw);
  expect_ok(&r);
  json_t *g = parse_json(r.out);
  assert_string_equal(jstr(g, "spec.password"), "***");
  json_decref(g);

  /* The password from the environment. */
  const char *env[] = {"ETCDREG_PASSWORD=" ROOT_SECRET, NULL};
  CLI_ENV(&r, env, "--user", "root", "group", "sec");
  expect_ok(&r);
  assert_non_null(strstr(r.out, "username: app\npassword: ***\n"));
  CLI_ENV(&r, env, "--user", "root", "--json", "group", "sec");
  expect_ok(&r);
  g = parse_json(r.out);
  assert_string_equal(jstr(g, "spec.username"), "app");
  assert_string_equal(jstr(g, "spec.password"), "***");
  json_decref(g);

  proc_t w, reg;
  proc_start(&w, env, ARGS("--endpoints", g_etcd.endpoint, "--user", "root", "watch", "sec"));
  wait_contains(w.err_path, "watching", 20000);
  proc_start(&reg, env, ARGS("--endpoints", g_etcd.endpoint, "--user", "root", "register", "sec", "--id", "n1",
                             "--type", "t", "--port", "1234", "--ttl", "5s"));
  wait_contains(reg.out_path, "registered sec n1/t", 20000);
  CLI_ENV(&r, env, "--user", "root", "configure", "sec", "--group-user", "app2", "--group-password-file", gpw);
  expect_ok(&r);
  CLI_ENV(&r, env, "--user", "root", "prometheus-sd", "--group", "sec");
  expect_ok(&r);
  assert_non_null(strstr(r.out, "\"n1:1234\""));
  CLI_ENV(&r, env, "--user", "root", "nodes", "sec", "--json");
  expect_ok(&r);
  kill(reg.pid, SIGTERM);
  assert_int_equal(proc_wait(&reg, 20000), 0);
  wait_contains(w.out_path, "update sec config username=app2 password=***", 20000);
  kill(w.pid, SIGTERM);
  assert_int_equal(proc_wait(&w, 20000), 0); /* its outputs are checked for passwords */

  /* A wrong password: exit 1, a clear message, the password nowhere. */
  CLI(&r, "--user", "root", "--password-file", wrong, "groups");
  expect_error_line(&r, 1);
  assert_non_null(strstr(r.err, "authentication failed"));
  const char *wenv[] = {"ETCDREG_PASSWORD=" WRONG_SECRET, NULL};
  CLI_ENV(&r, wenv, "--user", "root", "group", "sec");
  expect_error_line(&r, 1);
  /* No user at all: refused. */
  CLI(&r, "groups");
  expect_error_line(&r, 1);
  run_free(&r);
}

int main(void) {
  const struct CMUnitTest plain[] = {
      cmocka_unit_test_teardown(test_help, test_teardown),
      cmocka_unit_test_teardown(test_bad_arguments, test_teardown),
      cmocka_unit_test_teardown(test_unreachable, test_teardown),
      cmocka_unit_test_teardown(test_configure_group_groups, test_teardown),
      cmocka_unit_test_teardown(test_register_nodes_sigterm, test_teardown),
      cmocka_unit_test_teardown(test_reregistration_and_deregister, test_teardown),
      cmocka_unit_test_teardown(test_watch, test_teardown),
      cmocka_unit_test_teardown(test_prometheus_sd, test_teardown),
      cmocka_unit_test_teardown(test_prometheus_sd_out, test_teardown),
      cmocka_unit_test_teardown(test_register_survives_outage, test_teardown),
  };
  const struct CMUnitTest auth[] = {
      cmocka_unit_test_teardown(test_auth_passwords, test_teardown),
  };
  int failed = cmocka_run_group_tests_name("cli", plain, plain_up, suite_down);
  failed += cmocka_run_group_tests_name("cli_auth", auth, auth_up, suite_down);
  return failed;
}
