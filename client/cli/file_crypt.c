/*
 * file_crypt.c - the file handling `bkv encrypt` and `bkv decrypt` share: open the input,
 * write the output to a temporary file next to it and rename it into place only on
 * success (a failed decryption leaves nothing behind), and draw a progress bar when
 * standard error is a terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file_crypt.h"

typedef struct progress {
	struct timespec started;
	int last_percent;
} progress;

static void draw_progress(void *arg, uint64_t done, uint64_t total)
{
	progress *p = arg;
	if (total == 0)
		return;
	const int percent = (int)(done * 100 / total);
	if (percent == p->last_percent)
		return;
	p->last_percent = percent;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	const double seconds = (double)(now.tv_sec - p->started.tv_sec) +
	                       (double)(now.tv_nsec - p->started.tv_nsec) / 1e9;
	char bar[31];
	const int filled = percent * 30 / 100;
	for (int i = 0; i < 30; i++)
		bar[i] = i < filled ? '#' : ' ';
	bar[30] = '\0';
	fprintf(stderr, "\r[%s] %3d%% %8.1f MB/s", bar, percent,
	        seconds > 0 ? (double)done / 1e6 / seconds : 0.0);
	if (done == total)
		fputc('\n', stderr);
}

int file_crypt(const char *command, bool encrypt, int argc, char **argv)
{
	cli_options o;
	if (!cli_parse(argc, argv, "k", &o) || o.help || o.nargs != 2) {
		fprintf(
		    o.help ? stdout : stderr,
		    "usage: bkv %s [--key-file FILE] INPUT OUTPUT\n\n"
		    "%s a backup file with the 64-digit backup key in the format of\n"
		    "docs/BACKUP-FORMAT.md, streaming in constant memory. The key comes from\n"
		    "--key-file, else it is asked on the terminal, else read from standard input.\n"
		    "OUTPUT must not exist; it appears only when the whole file is\n"
		    "done%s.\n\n"
		    "INPUT - is standard input (the key then comes from --key-file or the\n"
		    "terminal); OUTPUT - is standard output, refused when that is a terminal.\n"
		    "%s",
		    command, encrypt ? "Encrypts" : "Decrypts", encrypt ? "" : " and verified",
		    encrypt
		        ? ""
		        : "Written to standard output, the plaintext goes out chunk by chunk as\n"
		          "each verifies: a truncated or altered file is found at the end, so\n"
		          "anything but exit 0 means the output must be thrown away.\n");
		return o.help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
	const char *in_path = o.args[0], *out_path = o.args[1];
	const bool in_std = strcmp(in_path, "-") == 0, out_std = strcmp(out_path, "-") == 0;
	if (out_std && isatty(STDOUT_FILENO)) {
		fprintf(stderr,
		        "bkv %s: standard output is a terminal; not writing binary data to it "
		        "(redirect it, or name an OUTPUT file)\n",
		        command);
		return CLI_EXIT_USAGE;
	}
	if (in_std && o.key_file != NULL && strcmp(o.key_file, "-") == 0) {
		fprintf(stderr, "bkv %s: INPUT and --key-file cannot both be - (standard input)\n",
		        command);
		return CLI_EXIT_USAGE;
	}
	bkv_key key;
	if (!cli_read_key(&o, in_std, &key))
		return CLI_EXIT_USAGE;
	int rc = CLI_EXIT_FAILURE;
	FILE *in = NULL, *out = NULL;
	char tmp[4096] = "";
	struct stat st;
	if (!out_std && access(out_path, F_OK) == 0) {
		fprintf(stderr, "bkv %s: %s already exists; not overwriting it\n", command,
		        out_path);
		rc = CLI_EXIT_USAGE;
		goto done;
	}
	in = in_std ? stdin : fopen(in_path, "rb");
	if (in == NULL || fstat(fileno(in), &st) != 0) {
		fprintf(stderr, "bkv %s: cannot read %s: %s\n", command,
		        in_std ? "standard input" : in_path, strerror(errno));
		goto done;
	}
	int fd = -1;
	if (out_std) {
		out = stdout;
	} else {
		snprintf(tmp, sizeof(tmp), "%s.partial-XXXXXX", out_path);
		fd = mkstemp(tmp);
	}
	if (!out_std && (fd < 0 || (out = fdopen(fd, "wb")) == NULL)) {
		fprintf(stderr, "bkv %s: cannot create %s: %s\n", command, tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		tmp[0] = '\0';
		goto done;
	}
	progress p = {.last_percent = -1};
	clock_gettime(CLOCK_MONOTONIC, &p.started);
	const bool tty = isatty(STDERR_FILENO);
	const uint64_t total = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	bkv_error error = {0};
	bkv_status s =
	    encrypt
	        ? bkv_backup_encrypt(&key, in, out, total, tty ? draw_progress : NULL, &p, &error)
	        : bkv_backup_decrypt(&key, in, out, total, tty ? draw_progress : NULL, &p, &error);
	/* A pipe cannot be synced; a file named OUTPUT is, before it is renamed into place. */
	if (s == BKV_OK && (fflush(out) != 0 || (!out_std && fsync(fileno(out)) != 0)))
		s = BKV_ERR_IO;
	if (fclose(out) != 0 && s == BKV_OK)
		s = BKV_ERR_IO;
	out = NULL;
	if (s != BKV_OK) {
		if (error.message[0] == '\0')
			snprintf(error.message, sizeof(error.message), "%s", bkv_status_name(s));
		fprintf(stderr, "%sbkv %s: %s\n", tty ? "\n" : "", command, error.message);
		goto done;
	}
	if (!out_std && rename(tmp, out_path) != 0) {
		fprintf(stderr, "bkv %s: cannot create %s: %s\n", command, out_path,
		        strerror(errno));
		goto done;
	}
	tmp[0] = '\0';
	rc = CLI_EXIT_OK;
done:
	if (out != NULL)
		fclose(out);
	if (in != NULL)
		fclose(in);
	if (tmp[0] != '\0')
		unlink(tmp);
	bkv_key_wipe(&key);
	return rc;
}
