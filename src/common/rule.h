/* The rule language of docs/interfaces.md, rules: which users a number range is for. */
#ifndef NUMPROV_RULE_H
#define NUMPROV_RULE_H

#include <stddef.h>

enum rule_attr {
	RA_CITY,
	RA_OFFICE, /* Graph officeLocation */
	RA_USAGE_LOCATION,
	RA_COUNTRY,
	RA_STATE,
	RA_DEPARTMENT,
	RA_COMPANY, /* Graph companyName */
	RA_JOB_TITLE,
	RA_EMPLOYEE_TYPE,
	RA_UPN,
	RA_EXT1, /* extension_attribute1 .. extension_attribute15 follow in order */
	RA_EXT15 = RA_EXT1 + 14,
	RA__MAX
};

/* A user's attributes as the rules see them; NULL means missing (equal to ""). */
struct rule_attrs {
	const char *v[RA__MAX];
};

struct rule_error {
	size_t offset;	   /* byte offset of the offending token in the rule text */
	char token[48];	   /* the offending token as written ("end of rule" at the end) */
	char message[160]; /* e.g. "expected a string after '='" */
};

struct rule;

/* Parse once. NULL on error, with *err filled. An empty rule text is an error. */
struct rule *rule_parse(const char *text, struct rule_error *err);
void rule_free(struct rule *r);

/* 1 when the rule holds for these attributes, else 0. */
int rule_eval(const struct rule *r, const struct rule_attrs *a);

/*
 * Explain an evaluation for an operator: the rule with each test's verdict,
 * e.g. `city = "Abingdon" [city is "abingdon": yes] AND office = "Office 1" [office is "": no]`.
 * Returns the verdict; buf is always NUL-terminated (truncated if too small).
 */
int rule_explain(const struct rule *r, const struct rule_attrs *a, char *buf, size_t len);

/* Canonical attribute name ("city", "usage_location", "extension_attribute7"). */
const char *rule_attr_name(enum rule_attr a);
/* Attribute by name, case-insensitive, Graph spellings accepted; -1 if unknown. */
int rule_attr_lookup(const char *name, size_t len);

/* Case-insensitive (Unicode simple case folding for UTF-8), surrounding spaces ignored. */
int rule_text_equal(const char *a, const char *b);

#endif
