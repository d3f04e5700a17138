/*
 * recover_key.c - a minimal libbkv program: recover the backup key for an account and
 * print its 64 digits, or say how many attempts are left.
 *
 *   cc recover_key.c $(pkg-config --cflags --libs bkv) -o recover_key
 *   BKV_TOKEN=... ./recover_key https://vault.example:8443 ca.pem   (password on stdin)
 *
 * or with CMake: find_package(bkv 0.1 REQUIRED) and target_link_libraries(app bkv::bkv).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bkv.h>

int main(int argc, char **argv)
{
	if (argc != 3 || getenv("BKV_TOKEN") == NULL) {
		fprintf(stderr,
		        "usage: BKV_TOKEN=<jwt> %s VAULT_URL CA_FILE < password\n"
		        "libbkv %s (built against %s)\n",
		        argv[0], bkv_version(), BKV_VERSION_STRING);
		return 2;
	}
	char password[1024];
	if (fgets(password, sizeof(password), stdin) == NULL)
		return 2;
	password[strcspn(password, "\r\n")] = '\0';

	bkv_client_config config = {.vault_url = argv[1], .ca_file = argv[2]};
	bkv_client *client = NULL;
	bkv_error error = {0};
	if (bkv_client_new(&config, &client, &error) != BKV_OK) {
		fprintf(stderr, "%s\n", error.message);
		return 1;
	}
	bkv_key key;
	bkv_recover_info info;
	bkv_status st = bkv_recover(client, getenv("BKV_TOKEN"), password, strlen(password), &key,
	                            &info, &error);
	memset(password, 0, sizeof(password)); /* libbkv wipes its own copies */
	bkv_client_free(client);
	if (st != BKV_OK) {
		/* e.g. "wrong password: 3 attempts left", or the key was destroyed */
		fprintf(stderr, "%s\n", error.message);
		return st == BKV_ERR_WRONG_PASSWORD ? 3 : st == BKV_ERR_DESTROYED ? 4 : 1;
	}
	char text[BKV_KEY_TEXT_BYTES];
	bkv_key_format(&key, text, sizeof(text));
	bkv_key_wipe(&key);
	printf("%s\n", text);
	memset(text, 0, sizeof(text));
	return 0;
}
