/*
 * cli.c - option parsing and the input helpers every bkv subcommand uses. Passwords come
 * from --password-file or the terminal (no echo), never from the command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

static const struct option all_options[] = {
    {"vault", required_argument, NULL, 'v'},
    {"ca-file", required_argument, NULL, 'c'},
    {"pin-cert", required_argument, NULL, 'P'},
    {"token-file", required_argument, NULL, 't'},
    {"password-file", required_argument, NULL, 'p'},
    {"new-password-file", required_argument, NULL, 'N'},
    {"key-file", required_argument, NULL, 'k'},
    {"out", required_argument, NULL, 'o'},
    {"attempt-limit", required_argument, NULL, 'a'},
    {"suite", required_argument, NULL, 's'},
    {"replace", no_argument, NULL, 'R'},
    {"yes", no_argument, NULL, 'y'},
    {"argon2", required_argument, NULL, 'A'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* "T,M,P": three decimal numbers from 1 to UINT32_MAX, nothing else. */
static bool parse_argon2(const char *text, unsigned out[3])
{
	const char *p = text;
	for (int i = 0; i < 3; i++) {
		if (*p < '0' || *p > '9')
			return false;
		char *end;
		errno = 0;
		const unsigned long v = strtoul(p, &end, 10);
		if (errno != 0 || v == 0 || v > UINT32_MAX || *end != (i < 2 ? ',' : '\0'))
			return false;
		out[i] = (unsigned)v;
		p = end + 1;
	}
	return true;
}

bool cli_parse(int argc, char **argv, const char *allowed, cli_options *o)
{
	memset(o, 0, sizeof(*o));
	o->vault_url = getenv("BKV_VAULT");
	int opt;
	optind = 1;
	opterr = 1;
	while ((opt = getopt_long(argc, argv, "h", all_options, NULL)) != -1) {
		if (opt == '?')
			return false;
		if (opt != 'h' && strchr(allowed, opt) == NULL) {
			fprintf(stderr, "bkv %s: option not accepted here (see --help)\n", argv[0]);
			return false;
		}
		switch (opt) {
		case 'v':
			o->vault_url = optarg;
			break;
		case 'c':
			o->ca_file = optarg;
			break;
		case 'P':
			o->pinned_cert = optarg;
			break;
		case 't':
			o->token_file = optarg;
			break;
		case 'p':
			o->password_file = optarg;
			break;
		case 'N':
			o->new_password_file = optarg;
			break;
		case 'k':
			o->key_file = optarg;
			break;
		case 'o': /* --out - is standard output, as without --out */
			o->out = strcmp(optarg, "-") == 0 ? NULL : optarg;
			break;
		case 'a': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end != '\0' || v == 0 || v > 1000) {
				fprintf(stderr, "bkv %s: --attempt-limit must be 1 to 1000\n",
				        argv[0]);
				return false;
			}
			o->attempt_limit = (unsigned)v;
			break;
		}
		case 's':
			o->suite = optarg;
			break;
		case 'R':
			o->replace = true;
			break;
		case 'y':
			o->yes = true;
			break;
		case 'A':
			if (!parse_argon2(optarg, o->argon2)) {
				fprintf(
				    stderr,
				    "bkv %s: --argon2 is ITERATIONS,MEMORY_KIB,PARALLELISM (each "
				    "a positive decimal number)\n",
				    argv[0]);
				return false;
			}
			o->argon2_set = true;
			break;
		case 'h':
			o->help = true;
			break;
		}
	}
	o->args = argv + optind;
	o->nargs = argc - optind;
	const char *files[] = {o->token_file, o->password_file, o->new_password_file, o->key_file};
	int dashes = 0;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		dashes += files[i] != NULL && strcmp(files[i], "-") == 0;
	if (dashes > 1) {
		fprintf(stderr,
		        "bkv %s: only one of --token-file, --password-file, --new-password-file "
		        "and --key-file can be - (standard input)\n",
		        argv[0]);
		return false;
	}
	return true;
}

int cli_exit_for(bkv_status status)
{
	switch (status) {
	case BKV_OK:
		return CLI_EXIT_OK;
	case BKV_ERR_ARGUMENT:
		return CLI_EXIT_USAGE;
	case BKV_ERR_WRONG_PASSWORD:
		return CLI_EXIT_WRONG_PASSWORD;
	case BKV_ERR_DESTROYED:
		return CLI_EXIT_DESTROYED;
	case BKV_ERR_UNAVAILABLE:
		return CLI_EXIT_UNAVAILABLE;
	case BKV_ERR_ALREADY_REGISTERED:
	case BKV_ERR_CONFLICT:
		return CLI_EXIT_EXISTS;
	case BKV_ERR_TLS:
		return CLI_EXIT_TLS;
	case BKV_ERR_HTTP:
		return CLI_EXIT_HTTP;
	case BKV_ERR_RATE_LIMITED:
		return CLI_EXIT_RATE_LIMITED;
	case BKV_ERR_UNAUTHENTICATED:
		return CLI_EXIT_UNAUTHENTICATED;
	default:
		return CLI_EXIT_FAILURE;
	}
}

int cli_fail(const char *command, const bkv_error *error)
{
	fprintf(stderr, "bkv %s: %s\n", command,
	        error->message[0] ? error->message : bkv_status_name(error->status));
	return cli_exit_for(error->status);
}

static bool cli_client(const cli_options *o, bkv_client **client)
{
	if (o->vault_url == NULL) {
		fprintf(stderr, "bkv: no vault: pass --vault URL or set BKV_VAULT\n");
		return false;
	}
	bkv_client_config config = {
	    .vault_url = o->vault_url,
	    .ca_file = o->ca_file,
	    .pinned_cert = o->pinned_cert,
	};
	if (o->argon2_set) {
		config.argon2_iterations = o->argon2[0];
		config.argon2_memory_kib = o->argon2[1];
		config.argon2_parallelism = o->argon2[2];
	}
	if (o->suite != NULL) {
		if (strcmp(o->suite, "p256-sha256") == 0)
			config.suite = BKV_SUITE_P256_SHA256;
		else if (strcmp(o->suite, "ristretto255-sha512") == 0)
			config.suite = BKV_SUITE_RISTRETTO255_SHA512;
		else {
			fprintf(stderr, "bkv: --suite is p256-sha256 or ristretto255-sha512\n");
			return false;
		}
	}
	bkv_error error = {0};
	if (bkv_client_new(&config, client, &error) != BKV_OK) {
		fprintf(stderr, "bkv: %s\n", error.message);
		return false;
	}
	return true;
}

void cli_wipe(void *p, size_t n)
{
	sodium_memzero(p, n);
}

void cli_format_time(int64_t unix_time, char *out, size_t cap)
{
	const time_t t = (time_t)unix_time;
	struct tm tm;
	if (unix_time <= 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, cap, "an unknown time");
}

/* Reads a small file (- is standard input); strips trailing newlines. Returns its length
 * or -1. */
static long read_small_file(const char *path, char *buf, size_t cap)
{
	const bool std_in = strcmp(path, "-") == 0;
	FILE *f = std_in ? stdin : fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "bkv: cannot read %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t n = fread(buf, 1, cap - 1, f);
	bool more = fgetc(f) != EOF;
	if (!std_in)
		fclose(f);
	if (more) {
		sodium_memzero(buf, cap);
		fprintf(stderr, "bkv: %s is too large\n", std_in ? "standard input" : path);
		return -1;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	return (long)n;
}

static char *cli_read_token(const cli_options *o)
{
	if (o->token_file != NULL) {
		char *buf = malloc(16384);
		const long n = buf ? read_small_file(o->token_file, buf, 16384) : -1;
		if (n == 0)
			fprintf(stderr, "bkv: the token file %s is empty\n", o->token_file);
		if (n <= 0) {
			free(buf);
			return NULL;
		}
		return buf;
	}
	const char *env = getenv("BKV_TOKEN");
	if (env == NULL || env[0] == '\0') {
		fprintf(stderr, "bkv: no account token: pass --token-file or set BKV_TOKEN\n");
		return NULL;
	}
	return strdup(env);
}

/* While echo is off: the terminal's settings, restored by a signal that ends bkv. */
static struct termios echo_saved;
static volatile sig_atomic_t echo_fd = -1;
static const int echo_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

static void restore_echo_and_die(int sig)
{
	const int fd = echo_fd;
	if (fd >= 0) {
		tcsetattr(fd, TCSAFLUSH, &echo_saved);
		if (write(fd, "\n", 1) < 0) {
			/* ignore */
		}
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Asks on the terminal (/dev/tty) and reads one line into buf, echoing it only if echo.
 * Returns its length, CLI_NO_TTY when there is no terminal, CLI_TTY_EOF at end of input
 * (Ctrl-D) and CLI_TTY_LONG when the line does not fit (the rest of it is read and
 * dropped). Never waits for anything but a line typed on the terminal. */
long cli_prompt_tty(const char *prompt, bool echo, char *buf, size_t cap)
{
	int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return CLI_NO_TTY;
	struct termios old, quiet;
	struct sigaction before[sizeof(echo_signals) / sizeof(echo_signals[0])];
	bool restore = !echo && tcgetattr(fd, &old) == 0;
	if (restore) {
		echo_saved = old;
		echo_fd = fd;
		struct sigaction sa = {.sa_handler = restore_echo_and_die};
		sigemptyset(&sa.sa_mask);
		for (size_t i = 0; i < sizeof(echo_signals) / sizeof(echo_signals[0]); i++)
			sigaction(echo_signals[i], &sa, &before[i]);
		quiet = old;
		quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHONL);
		quiet.c_lflag |= ICANON;
		tcsetattr(fd, TCSAFLUSH, &quiet);
	}
	if (write(fd, prompt, strlen(prompt)) < 0) {
		/* the prompt is a courtesy */
	}
	size_t n = 0;
	bool newline = false, too_long = false;
	char ch;
	while (read(fd, &ch, 1) == 1) {
		if (ch == '\n') {
			newline = true;
			break;
		}
		if (n + 1 < cap)
			buf[n++] = ch;
		else
			too_long = true;
	}
	buf[n] = '\0';
	ch = 0;
	if (restore) {
		tcsetattr(fd, TCSAFLUSH, &old);
		echo_fd = -1;
		for (size_t i = 0; i < sizeof(echo_signals) / sizeof(echo_signals[0]); i++)
			sigaction(echo_signals[i], &before[i], NULL);
		if (write(fd, "\n", 1) < 0) {
			/* ignore */
		}
	}
	close(fd);
	if (too_long) {
		sodium_memzero(buf, cap);
		return CLI_TTY_LONG;
	}
	if (!newline && n == 0)
		return CLI_TTY_EOF;
	return (long)n;
}

/* One password from the terminal; 0 (with a message) when there is none. */
static size_t ask_password(const char *prompt, char *buf, size_t cap)
{
	const long n = cli_prompt_tty(prompt, false, buf, cap);
	if (n == CLI_NO_TTY)
		fprintf(stderr,
		        "bkv: no terminal to ask for the password on; use --password-file\n");
	else if (n == CLI_TTY_EOF)
		fprintf(stderr, "bkv: no password given\n");
	else if (n == CLI_TTY_LONG)
		fprintf(stderr, "bkv: the password is too long (at most %zu bytes)\n", cap - 1);
	else if (n == 0)
		fprintf(stderr, "bkv: empty password\n");
	return n > 0 ? (size_t)n : 0;
}

size_t cli_read_password(const cli_options *o, const char *prompt, bool confirm, char *password,
                         size_t cap)
{
	if (o->password_file != NULL) {
		long n = read_small_file(o->password_file, password, cap);
		if (n == 0)
			fprintf(stderr, "bkv: the password file is empty\n");
		return n > 0 ? (size_t)n : 0;
	}
	for (int attempt = 1; attempt <= CLI_CONFIRM_TRIES; attempt++) {
		size_t n = ask_password(prompt, password, cap);
		if (n == 0 || !confirm)
			return n;
		char again[CLI_PASSWORD_MAX];
		size_t m = ask_password("Repeat the password: ", again, sizeof(again));
		bool same = m == n && sodium_memcmp(again, password, n) == 0;
		sodium_memzero(again, sizeof(again));
		if (same)
			return n;
		sodium_memzero(password, cap);
		if (m == 0)
			return 0;
		fprintf(stderr, "bkv: the passwords differ%s\n",
		        attempt < CLI_CONFIRM_TRIES ? "; try again" : "");
	}
	return 0;
}

bool cli_read_key(const cli_options *o, bool stdin_busy, bkv_key *key)
{
	char text[512];
	long n;
	if (o->key_file != NULL) {
		n = read_small_file(o->key_file, text, sizeof(text));
	} else if (stdin_busy || isatty(STDIN_FILENO)) {
		for (int attempt = 1;; attempt++) {
			n = cli_prompt_tty(
			    "Backup key (64 hex digits; spaces, dashes and upper case "
			    "are fine): ",
			    false, text, sizeof(text));
			if (n == CLI_NO_TTY) {
				fprintf(stderr,
				        "bkv: no terminal to ask for the backup key on; use "
				        "--key-file\n");
				return false;
			}
			if (n == CLI_TTY_EOF) {
				fprintf(stderr, "bkv: no backup key given\n");
				return false;
			}
			bkv_error error = {0};
			bool ok = n >= 0 && bkv_key_parse(text, (size_t)n, key, &error) == BKV_OK;
			sodium_memzero(text, sizeof(text));
			if (ok)
				return true;
			fprintf(stderr, "bkv: the backup key is not valid: %s%s\n",
			        n >= 0 ? error.message : "too long",
			        attempt < CLI_CONFIRM_TRIES ? "; try again" : "");
			if (attempt == CLI_CONFIRM_TRIES)
				return false;
		}
	} else {
		n = (long)fread(text, 1, sizeof(text) - 1, stdin);
		text[n] = '\0';
	}
	if (n < 0)
		return false;
	bkv_error error = {0};
	bool ok = bkv_key_parse(text, (size_t)n, key, &error) == BKV_OK;
	sodium_memzero(text, sizeof(text));
	if (!ok)
		fprintf(stderr, "bkv: the backup key is not valid: %s\n", error.message);
	return ok;
}

bool cli_connect(const cli_options *o, char **token, bkv_client **client)
{
	*client = NULL;
	*token = cli_read_token(o);
	if (*token != NULL && cli_client(o, client))
		return true;
	cli_disconnect(*token, NULL);
	*token = NULL;
	return false;
}

void cli_disconnect(char *token, bkv_client *client)
{
	bkv_client_free(client);
	if (token != NULL) {
		sodium_memzero(token, strlen(token));
		free(token);
	}
}
