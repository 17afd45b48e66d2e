/* Calls each syscall named on the command line with arguments the kernel rejects or that
 * change nothing, and prints "NAME ERRNO" (0: it succeeded). A seccomp filter answers with
 * its own errno before the kernel looks at the arguments: the tests compare the two. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long call(const char *name) {
    if (!strcmp(name, "add_key")) return syscall(SYS_add_key, NULL, NULL, NULL, 0, 0);
    if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, -1, 0, 0, 0, 0);
    if (!strcmp(name, "bpf")) return syscall(SYS_bpf, -1, NULL, 0);
    if (!strcmp(name, "kexec_load")) return syscall(SYS_kexec_load, 0, 0, NULL, 0);
    if (!strcmp(name, "userfaultfd")) return syscall(SYS_userfaultfd, -1);
    if (!strcmp(name, "io_uring_setup")) return syscall(SYS_io_uring_setup, 0, NULL);
    if (!strcmp(name, "personality")) return syscall(SYS_personality, 0xffffffffUL - 1);
    if (!strcmp(name, "getpid")) return syscall(SYS_getpid);
    errno = 255;
    return -1;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long r = call(argv[i]);
        printf("%s %d\n", argv[i], r < 0 ? errno : 0);
    }
    return 0;
}
