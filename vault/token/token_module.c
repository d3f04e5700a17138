/*
 * token_module.c - loading a PKCS#11 module: dlopen, C_GetFunctionList, and C_Initialize
 * with OS locking and the configured pReserved string (init_args); unloading it again.
 *
 * No p11-kit loader: p11-kit refuses to load its own p11-kit-proxy.so as a module, cannot
 * pass a pReserved string, and reports a failed load without its cause. Here every failure
 * says why: dlerror()'s text for the library and its C_GetFunctionList, the CKR name for
 * C_Initialize.
 *
 * A module is initialized once per process and shared by every bkv_token opened on it (the
 * tests and tools open several); the last close finalizes it. C_Finalize is called only if
 * this process's own C_Initialize succeeded: CKR_CRYPTOKI_ALREADY_INITIALIZED means another
 * loader in the process (p11-kit, a test's own view of the module) initialized it and owns
 * its finalization, and finalizing under it would end that loader's sessions. The first open
 * decides init_args; a later open of the same module with other init_args is refused. After
 * fork() a child shares nothing with its parent's modules: PKCS#11 wants a new C_Initialize.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>

#include "token_internal.h"

struct token_module {
	void *library;        /* one dlopen reference per open */
	CK_FUNCTION_LIST *fn; /* the module's function list */
	char *init_args;      /* NULL or C_Initialize's pReserved, kept for the module's life */
	unsigned users;       /* bkv_tokens open on it */
	bool finalize;        /* our C_Initialize succeeded: the last close calls C_Finalize */
	pid_t pid;            /* the process that initialized it */
	token_module *next;
};

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static token_module *modules; /* loaded and initialized, guarded by modules_lock */

static bool same_init_args(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static token_module *find_loaded(void *library)
{
	for (token_module *m = modules; m != NULL; m = m->next) {
		if (m->library == library && m->pid == getpid())
			return m;
	}
	return NULL;
}

/* C_GetFunctionList and C_Initialize on a freshly opened library; on failure why says which
 * step failed and why. */
static bkv_token_err initialize(token_module *m, const char *path, char *why, size_t why_len)
{
	dlerror();
	CK_C_GetFunctionList get_list =
	    (CK_C_GetFunctionList)dlsym(m->library, "C_GetFunctionList");
	if (get_list == NULL) {
		const char *reason = dlerror();
		snprintf(why, why_len, "%s is not a PKCS#11 module: no C_GetFunctionList (%s)",
		         path, reason != NULL ? reason : "the symbol is NULL");
		return BKV_TOKEN_ERR_MODULE;
	}
	CK_RV rv = get_list(&m->fn);
	if (rv != CKR_OK || m->fn == NULL) {
		snprintf(why, why_len, "C_GetFunctionList of PKCS#11 module %s failed: %s (0x%lx)",
		         path, bkv_token_ckr_name(rv), (unsigned long)rv);
		return BKV_TOKEN_ERR_MODULE;
	}
	CK_C_INITIALIZE_ARGS args = {
	    .flags = CKF_OS_LOCKING_OK,
	    .pReserved = m->init_args,
	};
	rv = m->fn->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		snprintf(why, why_len,
		         "cannot initialize PKCS#11 module %s: C_Initialize (OS locking, %s) "
		         "failed: %s (0x%lx, %s)",
		         path, m->init_args != NULL ? "init_args" : "no init_args",
		         bkv_token_ckr_name(rv), (unsigned long)rv, p11_kit_strerror(rv));
		return BKV_TOKEN_ERR_MODULE;
	}
	m->finalize = rv == CKR_OK;
	return BKV_TOKEN_OK;
}

/* Another open of a module this process initialized: shares it if init_args agree. */
static bkv_token_err share(token_module *m, const char *init_args, const char *path, char *why,
                           size_t why_len)
{
	if (!same_init_args(m->init_args, init_args)) {
		snprintf(why, why_len,
		         "PKCS#11 module %s is already initialized in this process with other "
		         "init_args",
		         path);
		return BKV_TOKEN_ERR_ARGUMENT;
	}
	m->users++;
	return BKV_TOKEN_OK;
}

/* The first open of library in this process: initializes it and adds it to modules. */
static bkv_token_err load(void *library, const char *init_args, const char *path,
                          token_module **module, char *why, size_t why_len)
{
	token_module *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return BKV_TOKEN_ERR_NOMEM;
	if (init_args != NULL && (m->init_args = strdup(init_args)) == NULL) {
		free(m);
		return BKV_TOKEN_ERR_NOMEM;
	}
	m->library = library;
	m->users = 1;
	m->pid = getpid();
	bkv_token_err err = initialize(m, path, why, why_len);
	if (err != BKV_TOKEN_OK) {
		free(m->init_args);
		free(m);
		return err;
	}
	m->next = modules;
	modules = m;
	*module = m;
	return BKV_TOKEN_OK;
}

bkv_token_err token_module_open(const char *path, const char *init_args, token_module **module,
                                char *why, size_t why_len)
{
	*module = NULL;
	void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (library == NULL) {
		snprintf(why, why_len, "cannot load PKCS#11 module %s: %s", path, dlerror());
		return BKV_TOKEN_ERR_MODULE;
	}
	pthread_mutex_lock(&modules_lock);
	token_module *m = find_loaded(library);
	bkv_token_err err = m != NULL ? share(m, init_args, path, why, why_len)
	                              : load(library, init_args, path, &m, why, why_len);
	pthread_mutex_unlock(&modules_lock);
	if (err == BKV_TOKEN_ERR_NOMEM)
		snprintf(why, why_len, "out of memory loading PKCS#11 module %s", path);
	if (err != BKV_TOKEN_OK) {
		dlclose(library);
		return err;
	}
	*module = m;
	return BKV_TOKEN_OK;
}

CK_FUNCTION_LIST *token_module_functions(const token_module *module)
{
	return module->fn;
}

void token_module_close(token_module *module)
{
	if (module == NULL)
		return;
	void *library = module->library;
	pthread_mutex_lock(&modules_lock);
	if (--module->users == 0) {
		for (token_module **p = &modules; *p != NULL; p = &(*p)->next) {
			if (*p == module) {
				*p = module->next;
				break;
			}
		}
		if (module->finalize)
			module->fn->C_Finalize(NULL);
		free(module->init_args);
		free(module);
	}
	pthread_mutex_unlock(&modules_lock);
	/* The library stays mapped (each open's dlopen reference is kept): some modules
	 * (openCryptoki 3.8) leave threads or atexit handlers behind that make a later
	 * dlopen and C_Initialize in this process or its forked children hang. */
	(void)library;
}
