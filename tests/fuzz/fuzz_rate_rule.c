/*
 * fuzz_rate_rule.c - the [rate_limit] rule syntax (bkv_rate_rule_parse): any text either
 * fails or gives a rule inside the documented bounds, and that rule, written back in the
 * syntax, parses to itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (text == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	bkv_rate_rule rule;
	if (bkv_rate_rule_parse(text, &rule) && rule.count != 0) {
		if (rule.count > BKV_RATE_COUNT_MAX || rule.burst < 1 ||
		    rule.burst > BKV_RATE_BURST_MAX ||
		    (rule.period_s != 1 && rule.period_s != 60 && rule.period_s != 3600))
			abort();
		char again[64];
		snprintf(again, sizeof(again), "%u/%s burst %u", rule.count,
		         rule.period_s == 1    ? "s"
		         : rule.period_s == 60 ? "min"
		                               : "h",
		         rule.burst);
		bkv_rate_rule back;
		if (!bkv_rate_rule_parse(again, &back) || memcmp(&back, &rule, sizeof(rule)) != 0)
			abort();
	}
	free(text);
	return 0;
}
