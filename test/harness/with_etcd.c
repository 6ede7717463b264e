/* with_etcd: runs a command against a fresh etcd started by the harness.
 *   with_etcd CMD ARGS...   -- every "{endpoint}" in ARGS becomes 127.0.0.1:<port>
 * Exits with the command's status; etcd is stopped (by PID) either way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "etcd_harness.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: with_etcd CMD [ARGS...]   ({endpoint} is replaced)\n");
    return 2;
  }
  th_etcd_t e;
  if (th_etcd_start(&e, NULL) != 0) return 1;
  char **args = calloc((size_t)argc, sizeof(char *));
  for (int i = 1; i < argc; i++) {
    const char *at = strstr(argv[i], "{endpoint}");
    if (!at) {
      args[i - 1] = argv[i];
      continue;
    }
    size_t n = strlen(argv[i]) + strlen(e.endpoint) + 1;
    args[i - 1] = malloc(n);
    snprintf(args[i - 1], n, "%.*s%s%s", (int)(at - argv[i]), argv[i], e.endpoint, at + 10);
  }
  pid_t pid = fork();
  if (pid == 0) {
    execvp(args[0], args);
    perror("with_etcd: exec");
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  th_etcd_stop(&e);
  for (int i = 1; i < argc; i++)
    if (args[i - 1] != argv[i]) free(args[i - 1]);
  free(args);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
