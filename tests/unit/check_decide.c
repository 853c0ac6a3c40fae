/*
 * decide(): the decision for one user, table by table against docs/interfaces.md (B1-B16)
 * (B1-B16, as far as they are decided per user) and docs/decisions.md; the
 * range-type table, range_of_number and the candidate order; and a sweep of
 * every combination of inputs checking the rules no decision may break.
 */
#include "build-config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "decide.h"
#include "inventory.h"
#include "rule.h"
#include "teams.h"
#include "testutil.h"
#include "user.h"

#define NOW ((time_t)1800000000)

#define TENANT                                                                                     \
	"tenant: { id = \"contoso.onmicrosoft.com\";\n"                                            \
	"  client_id = \"11111111-2222-3333-4444-555555555555\";\n"                                \
	"  client_secret_file = \"/etc/numprov/client-secret\"; };\n"

/*
 * The ranges every table below is decided against, in this config order:
 *   0 dr-abingdon    direct-routing   city Abingdon AND office "Office 1"   10
 *   1 dr-abingdon-2  direct-routing   city Abingdon                         10
 *   2 cp-london      calling-plan     the seed's rule (Park Lane, LONDON)  100
 *   3 ext-hq         direct-routing   GB AND department IN (Support, Sales) 50 (extensions)
 *   4 dr-or          direct-routing   (Oxford OR Didcot) AND NOT Contractors 30
 *   5 z-tie          direct-routing   company Tie                           20
 *   6 a-tie          operator-connect company Tie                           20
 *   7 oc-uk          operator-connect usage_location GB                   1000
 *   8 cp-gb          calling-plan     usage_location GB                    500
 *   9 late-first     direct-routing   company Tie                            5
 */
#define RANGES                                                                                     \
	"ranges = (\n"                                                                             \
	" { name = \"dr-abingdon\"; type = \"direct-routing\"; first = \"+441235000000\";\n"       \
	"   last = \"+441235000999\"; match = \"city = 'Abingdon' AND office = 'Office 1'\";\n"    \
	"   priority = 10; reserved = [ \"+441235000000\" ]; },\n"                                 \
	" { name = \"dr-abingdon-2\"; type = \"direct-routing\"; first = \"+441235001000\";\n"     \
	"   last = \"+441235001999\"; match = \"city = 'Abingdon'\"; priority = 10; },\n"          \
	" { name = \"cp-london\"; type = \"calling-plan\"; first = \"+442071230000\";\n"           \
	"   last = \"+442071230499\"; match = \"Office = \\\"Park Lane\\\" AND City = "            \
	"\\\"LONDON\\\"\"; },\n"                                                                   \
	" { name = \"ext-hq\"; type = \"direct-routing\"; first = \"+441235999000;ext=100\";\n"    \
	"   last = \"+441235999000;ext=199\";\n"                                                   \
	"   match = \"usage_location = 'GB' AND department IN ('Support', 'Sales')\"; priority = " \
	"50; },\n"                                                                                 \
	" { name = \"dr-or\"; type = \"direct-routing\"; first = \"+441865000000\";\n"             \
	"   last = \"+441865000099\";\n"                                                           \
	"   match = \"(city = 'Oxford' OR city = 'Didcot') AND NOT department = "                  \
	"'Contractors'\";\n"                                                                       \
	"   priority = 30; },\n"                                                                   \
	" { name = \"z-tie\"; type = \"direct-routing\"; first = \"+441865100000\";\n"             \
	"   last = \"+441865100099\"; match = \"company = 'Tie'\"; priority = 20; },\n"            \
	" { name = \"a-tie\"; type = \"operator-connect\"; first = \"+441865200000\";\n"           \
	"   last = \"+441865200099\"; match = \"company = 'Tie'\"; priority = 20; },\n"            \
	" { name = \"oc-uk\"; type = \"operator-connect\"; first = \"+441632960000\";\n"           \
	"   last = \"+441632960999\"; match = \"usage_location = 'GB'\"; priority = 1000; },\n"    \
	" { name = \"cp-gb\"; type = \"calling-plan\"; first = \"+442071240000\";\n"               \
	"   last = \"+442071240999\"; match = \"usage_location = 'GB'\"; priority = 500; },\n"     \
	" { name = \"late-first\"; type = \"direct-routing\"; first = \"+441865300000\";\n"        \
	"   last = \"+441865300099\"; match = \"company = 'Tie'\"; priority = 5; }\n"              \
	");\n"

/* A number of ours (dr-abingdon) and one outside every range. */
#define OURS "+441235000123"
#define OURS_EXT "+441235999000;ext=150"
#define FOREIGN "+4930123456"

enum cfg_variant {
	C_ENFORCE,    /* the defaults: release on delete and unlicense, keep on disable */
	C_DRY,	      /* the same in dry-run */
	C_OFF,	      /* the same with sync.mode off */
	C_KEEP,	      /* release_on_delete = release_on_unlicense = false */
	C_RELDIS,     /* release_on_disable = true */
	C_RELDIS_DRY, /* ... in dry-run */
	C_RELDIS_OFF, /* ... with sync.mode off */
	C__MAX
};

static const struct {
	const char *mode;
	const char *on_delete, *on_unlicense, *on_disable;
} variants[C__MAX] = {
	[C_ENFORCE] = { "enforce", "true", "true", "false" },
	[C_DRY] = { "dry-run", "true", "true", "false" },
	[C_OFF] = { "off", "true", "true", "false" },
	[C_KEEP] = { "enforce", "false", "false", "false" },
	[C_RELDIS] = { "enforce", "true", "true", "true" },
	[C_RELDIS_DRY] = { "dry-run", "true", "true", "true" },
	[C_RELDIS_OFF] = { "off", "true", "true", "true" },
};

static char err[8192];

/* Write text to a temporary file and load it (must succeed). */
static struct config *
load_text(const char *text)
{
	char file[64];
	struct config *c;
	FILE *f;
	int fd;

	snprintf(file, sizeof(file), "/tmp/numprov-decide-XXXXXX");
	fd = mkstemp(file);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	c = config_load(file, err, sizeof(err));
	unlink(file);
	ck_assert_msg(c != NULL, "config refused: %s", err);
	return c;
}

static struct config *
load_variant(enum cfg_variant v)
{
	char text[8192];

	snprintf(text, sizeof(text),
	    TENANT "sync: { mode = \"%s\"; };\n"
		   "policy: { release_on_delete = %s; release_on_unlicense = %s; "
		   "release_on_disable = %s; };\n" RANGES,
	    variants[v].mode, variants[v].on_delete, variants[v].on_unlicense,
	    variants[v].on_disable);
	return load_text(text);
}

static void
set_attr(struct user *u, enum rule_attr a, const char *v)
{
	free(u->attr[a]);
	u->attr[a] = v ? strdup(v) : NULL;
	if (v)
		ck_assert_ptr_nonnull(u->attr[a]);
}

static struct inv_user
held_number(const char *number, int pending)
{
	struct inv_user h;

	memset(&h, 0, sizeof(h));
	snprintf(h.id, sizeof(h.id), "u1");
	snprintf(h.upn, sizeof(h.upn), "alice@contoso.com");
	snprintf(h.number, sizeof(h.number), "%s", number);
	h.state = pending ? INV_PENDING : INV_ASSIGNED;
	h.since = NOW - 86400;
	return h;
}

/* ---- the decision table -------------------------------------------------- */

/* The user's licence and account are the common case unless a row says otherwise. */
struct row {
	const char *b, *what;
	enum cfg_variant cfg;
	/* the user */
	int disabled, unlicensed, calling_plan;
	enum user_state state;
	uint8_t flags;
	int64_t retry_at;
	const char *city, *office, *usage, *dept, *company;
	/* what the inventory holds for them (NULL: nothing), and what Teams shows */
	const char *held;
	int held_pending;
	const char *teams;	/* NULL: Teams not read this cycle */
	const char *change_new; /* an administrator's change of number in flight */
	/* expected */
	enum action act;
	enum reason reason;
	const char *number; /* d.number, NULL when none */
	time_t until;
	const char *cand[8]; /* the candidate ranges in order, NULL-terminated */
};

#define ABINGDON_1 .city = "Abingdon", .office = "Office 1", .usage = "GB"

static const struct row rows[] = {
	/* B1: licensed, no number */
	{ "B1", "new user, Teams not read: ask Teams first", C_ENFORCE, ABINGDON_1,
	    .act = ACT_CHECK, .reason = RSN_NEW,
	    .cand = { "dr-abingdon", "dr-abingdon-2", "oc-uk" } },
	{ "B1", "new user, Teams shows none: assign", C_ENFORCE, ABINGDON_1, .teams = "",
	    .act = ACT_ASSIGN, .reason = RSN_NEW,
	    .cand = { "dr-abingdon", "dr-abingdon-2", "oc-uk" } },
	{ "B1", "unmatched before, decided again", C_ENFORCE, ABINGDON_1, .state = US_NO_MATCH,
	    .flags = USER_F_DUE, .act = ACT_CHECK, .reason = RSN_NEW,
	    .cand = { "dr-abingdon", "dr-abingdon-2", "oc-uk" } },
	{ "B1", "ranges were full before: tried again in order", C_ENFORCE, ABINGDON_1,
	    .state = US_RANGES_FULL, .teams = "", .act = ACT_ASSIGN, .reason = RSN_NEW,
	    .cand = { "dr-abingdon", "dr-abingdon-2", "oc-uk" } },
	{ "B1", "assigning, its pending number failed back: asks Teams", C_ENFORCE, ABINGDON_1,
	    .state = US_ASSIGNING, .act = ACT_CHECK, .reason = RSN_NEW,
	    .cand = { "dr-abingdon", "dr-abingdon-2", "oc-uk" } },
	/* B2: the licence class picks the range types */
	{ "B2", "calling plan: calling-plan ranges only", C_ENFORCE, .calling_plan = 1,
	    .city = "London", .office = "Park Lane", .usage = "GB", .teams = "", .act = ACT_ASSIGN,
	    .reason = RSN_NEW, .cand = { "cp-london", "cp-gb" } },
	{ "B2", "calling plan: direct-routing rules that hold do not count", C_ENFORCE,
	    .calling_plan = 1, ABINGDON_1, .dept = "Sales", .company = "Tie", .act = ACT_CHECK,
	    .reason = RSN_NEW, .cand = { "cp-gb" } },
	{ "B2", "no calling plan: calling-plan rules that hold do not count", C_ENFORCE,
	    .city = "London", .office = "Park Lane", .usage = "GB", .teams = "", .act = ACT_ASSIGN,
	    .reason = RSN_NEW, .cand = { "oc-uk" } },
	{ "B2", "no calling plan: direct routing and operator connect both", C_ENFORCE,
	    .company = "Tie", .teams = "", .act = ACT_ASSIGN, .reason = RSN_NEW,
	    .cand = { "late-first", "z-tie", "a-tie" } },
	/* B3: priority, config order on ties; the list is the overflow order */
	{ "B3", "lowest priority first, the whole list in order", C_ENFORCE, ABINGDON_1,
	    .dept = "Sales", .company = "Tie", .teams = "", .act = ACT_ASSIGN, .reason = RSN_NEW,
	    .cand = { "late-first", "dr-abingdon", "dr-abingdon-2", "z-tie", "a-tie", "ext-hq",
		"oc-uk" } },
	{ "B3", "ties keep config order, not name order", C_ENFORCE, .company = "Tie",
	    .act = ACT_CHECK, .reason = RSN_NEW, .cand = { "late-first", "z-tie", "a-tie" } },
	{ "B3", "extension range before the catch-all", C_ENFORCE, .usage = "GB", .dept = "Support",
	    .act = ACT_CHECK, .reason = RSN_NEW, .cand = { "ext-hq", "oc-uk" } },
	/* B4: rules through the candidates */
	{ "B4", "AND: the office must hold too", C_ENFORCE, .city = "Abingdon",
	    .office = "Office 2", .act = ACT_CHECK, .reason = RSN_NEW,
	    .cand = { "dr-abingdon-2" } },
	{ "B4", "AND: comparisons ignore case and surrounding spaces", C_ENFORCE,
	    .city = "  ABINGDON ", .office = "office 1", .act = ACT_CHECK, .reason = RSN_NEW,
	    .cand = { "dr-abingdon", "dr-abingdon-2" } },
	{ "B4", "OR: either city", C_ENFORCE, .city = "Didcot", .act = ACT_CHECK, .reason = RSN_NEW,
	    .cand = { "dr-or" } },
	{ "B4", "OR: the other city", C_ENFORCE, .city = "oxford", .dept = "Sales",
	    .act = ACT_CHECK, .reason = RSN_NEW, .cand = { "dr-or" } },
	{ "B4", "NOT: excluded department", C_ENFORCE, .city = "Oxford", .dept = "Contractors",
	    .act = ACT_UNMATCHED, .reason = RSN_NO_MATCH },
	{ "B4", "the seed's rule, case-insensitive", C_ENFORCE, .calling_plan = 1, .city = "london",
	    .office = "PARK LANE", .act = ACT_CHECK, .reason = RSN_NEW, .cand = { "cp-london" } },
	/* B5: no range's rule holds */
	{ "B5", "no rule holds", C_ENFORCE, .city = "Paris", .usage = "FR", .act = ACT_UNMATCHED,
	    .reason = RSN_NO_MATCH },
	{ "B5", "no rule holds, Teams read", C_ENFORCE, .city = "Paris", .usage = "FR", .teams = "",
	    .act = ACT_UNMATCHED, .reason = RSN_NO_MATCH },
	{ "B5", "calling plan, no calling-plan rule holds", C_ENFORCE, .calling_plan = 1,
	    .city = "Abingdon", .office = "Office 1", .usage = "FR", .act = ACT_UNMATCHED,
	    .reason = RSN_NO_MATCH },
	{ "B5", "no attributes at all", C_ENFORCE, .act = ACT_UNMATCHED, .reason = RSN_NO_MATCH },
	{ "B5", "unmatched before: still unmatched", C_ENFORCE, .state = US_NO_MATCH,
	    .city = "Paris", .act = ACT_UNMATCHED, .reason = RSN_NO_MATCH },
	/* B6: disabled keeps the number */
	{ "B6", "disabled with a number: retained once", C_ENFORCE, .disabled = 1, ABINGDON_1,
	    .state = US_ASSIGNED, .held = OURS, .act = ACT_RETAIN, .reason = RSN_DISABLED,
	    .number = OURS },
	{ "B6", "disabled, already recorded as such: nothing", C_ENFORCE, .disabled = 1, ABINGDON_1,
	    .state = US_DISABLED, .held = OURS, .act = ACT_NOTHING, .reason = RSN_DISABLED,
	    .number = OURS },
	{ "B6", "disabled without a number: none given", C_ENFORCE, .disabled = 1, ABINGDON_1,
	    .teams = "", .act = ACT_NOTHING, .reason = RSN_DISABLED },
	{ "B6", "disabled and moved: retained as disabled", C_ENFORCE, .disabled = 1, ABINGDON_1,
	    .state = US_ASSIGNED, .flags = USER_F_MOVED, .held = OURS, .act = ACT_RETAIN,
	    .reason = RSN_DISABLED, .number = OURS },
	{ "B6", "release_on_disable: released", C_RELDIS, .disabled = 1, ABINGDON_1,
	    .state = US_ASSIGNED, .held = OURS, .act = ACT_RELEASE, .reason = RSN_DISABLED,
	    .number = OURS },
	{ "B6", "release_on_disable, recorded disabled before: released", C_RELDIS, .disabled = 1,
	    .state = US_DISABLED, .held = OURS, .act = ACT_RELEASE, .reason = RSN_DISABLED,
	    .number = OURS },
	{ "B6", "release_on_disable, dry-run: decided like enforce", C_RELDIS_DRY, .disabled = 1,
	    .state = US_ASSIGNED, .held = OURS, .act = ACT_RELEASE, .reason = RSN_DISABLED,
	    .number = OURS },
	{ "B6", "release_on_disable, mode off: no release", C_RELDIS_OFF, .disabled = 1,
	    .state = US_ASSIGNED, .held = OURS, .act = ACT_RETAIN, .reason = RSN_DISABLED,
	    .number = OURS },
	/* B7: deleted */
	{ "B7", "deleted with a number: released", C_ENFORCE, .state = US_GONE, .held = OURS,
	    .act = ACT_RELEASE, .reason = RSN_DELETED, .number = OURS },
	{ "B7", "deleted without a number: forgotten", C_ENFORCE, .state = US_GONE,
	    .act = ACT_FORGET, .reason = RSN_DELETED },
	{ "B7", "deleted, Teams shows a number: forgotten (never adopted)", C_ENFORCE,
	    .state = US_GONE, .teams = OURS, .act = ACT_FORGET, .reason = RSN_DELETED },
	{ "B7", "deleted while disabled and unlicensed: released as deleted", C_ENFORCE,
	    .state = US_GONE, .disabled = 1, .unlicensed = 1, .held = OURS, .act = ACT_RELEASE,
	    .reason = RSN_DELETED, .number = OURS },
	{ "B7", "release_on_delete = false: kept by policy", C_KEEP, .state = US_GONE, .held = OURS,
	    .act = ACT_NOTHING, .reason = RSN_POLICY, .number = OURS },
	{ "B7", "release_on_delete = false, no number: forgotten", C_KEEP, .state = US_GONE,
	    .act = ACT_FORGET, .reason = RSN_DELETED },
	{ "B7", "dry-run: decided like enforce", C_DRY, .state = US_GONE, .held = OURS,
	    .act = ACT_RELEASE, .reason = RSN_DELETED, .number = OURS },
	{ "B7", "mode off: no release", C_OFF, .state = US_GONE, .held = OURS, .act = ACT_NOTHING,
	    .reason = RSN_MODE_OFF, .number = OURS },
	{ "B7", "deleted, assignment unsettled: settled first", C_ENFORCE, .state = US_GONE,
	    .held = OURS, .held_pending = 1, .act = ACT_NOTHING, .reason = RSN_PENDING,
	    .number = OURS },
	/* B8: the Teams Phone licence went */
	{ "B8", "unlicensed with a number: released", C_ENFORCE, .unlicensed = 1, ABINGDON_1,
	    .state = US_ASSIGNED, .held = OURS, .act = ACT_RELEASE, .reason = RSN_UNLICENSED,
	    .number = OURS },
	{ "B8", "unlicensed and disabled: the licence decides", C_ENFORCE, .unlicensed = 1,
	    .disabled = 1, .state = US_ASSIGNED, .held = OURS, .act = ACT_RELEASE,
	    .reason = RSN_UNLICENSED, .number = OURS },
	{ "B8", "release_on_unlicense = false: nothing", C_KEEP, .unlicensed = 1,
	    .state = US_ASSIGNED, .held = OURS, .act = ACT_NOTHING, .reason = RSN_UNLICENSED,
	    .number = OURS },
	{ "B8", "unlicensed without a number: nothing", C_ENFORCE, .unlicensed = 1, ABINGDON_1,
	    .teams = "", .act = ACT_NOTHING, .reason = RSN_UNLICENSED },
	{ "B8", "unlicensed, Teams shows a number of ours: not adopted", C_ENFORCE, .unlicensed = 1,
	    .teams = OURS, .act = ACT_NOTHING, .reason = RSN_UNLICENSED },
	{ "B8", "dry-run: decided like enforce", C_DRY, .unlicensed = 1, .held = OURS,
	    .act = ACT_RELEASE, .reason = RSN_UNLICENSED, .number = OURS },
	{ "B8", "mode off: no release", C_OFF, .unlicensed = 1, .held = OURS, .act = ACT_NOTHING,
	    .reason = RSN_UNLICENSED, .number = OURS },
	{ "B8", "unlicensed, assignment unsettled: settled first", C_ENFORCE, .unlicensed = 1,
	    .held = OURS, .held_pending = 1, .act = ACT_NOTHING, .reason = RSN_PENDING,
	    .number = OURS },
	/* B9: moved */
	{ "B9", "moved with a number: retained", C_ENFORCE, .city = "Oxford", .state = US_ASSIGNED,
	    .flags = USER_F_MOVED | USER_F_DUE, .held = OURS, .act = ACT_RETAIN,
	    .reason = RSN_MOVED, .number = OURS },
	{ "B9", "not moved, holds a number: nothing", C_ENFORCE, ABINGDON_1, .state = US_ASSIGNED,
	    .flags = USER_F_DUE, .held = OURS, .act = ACT_NOTHING, .reason = RSN_HAS_NUMBER,
	    .number = OURS },
	{ "B9", "holds a number no rule would give now: kept", C_ENFORCE, .city = "Paris",
	    .state = US_ASSIGNED, .held = OURS, .act = ACT_NOTHING, .reason = RSN_HAS_NUMBER,
	    .number = OURS },
	{ "B9", "moved, dry-run: decided like enforce", C_DRY, .flags = USER_F_MOVED,
	    .state = US_ASSIGNED, .held = OURS, .act = ACT_RETAIN, .reason = RSN_MOVED,
	    .number = OURS },
	{ "B9", "moved, mode off: the retain is still logged", C_OFF, .flags = USER_F_MOVED,
	    .state = US_ASSIGNED, .held = OURS, .act = ACT_RETAIN, .reason = RSN_MOVED,
	    .number = OURS },
	{ "B9", "moved without a number: decided as new", C_ENFORCE, .flags = USER_F_MOVED,
	    .city = "Didcot", .act = ACT_CHECK, .reason = RSN_NEW, .cand = { "dr-or" } },
	/* B10: Teams shows a number */
	{ "B10", "a number of ours: adopted", C_ENFORCE, ABINGDON_1, .teams = OURS,
	    .act = ACT_ADOPT, .reason = RSN_HAS_NUMBER, .number = OURS },
	{ "B10", "an extension of ours: adopted", C_ENFORCE, ABINGDON_1, .teams = OURS_EXT,
	    .act = ACT_ADOPT, .reason = RSN_HAS_NUMBER, .number = OURS_EXT },
	{ "B10", "a number of ours written otherwise: adopted", C_ENFORCE,
	    .teams = "tel:+44-1235-000-123", .act = ACT_ADOPT, .reason = RSN_HAS_NUMBER,
	    .number = "tel:+44-1235-000-123" },
	{ "B10", "a reserved number of ours: adopted (the inventory judges)", C_ENFORCE,
	    .teams = "+441235000000", .act = ACT_ADOPT, .reason = RSN_HAS_NUMBER,
	    .number = "+441235000000" },
	{ "B10", "a number of a range the user would not get: adopted", C_ENFORCE,
	    .calling_plan = 1, .city = "Paris", .teams = OURS, .act = ACT_ADOPT,
	    .reason = RSN_HAS_NUMBER, .number = OURS },
	{ "B10", "outside every range: nothing, never assigned", C_ENFORCE, ABINGDON_1,
	    .teams = FOREIGN, .act = ACT_NOTHING, .reason = RSN_EXTERNAL, .number = FOREIGN },
	{ "B10", "outside every range, unmatched user: still nothing", C_ENFORCE, .city = "Paris",
	    .teams = FOREIGN, .act = ACT_NOTHING, .reason = RSN_EXTERNAL, .number = FOREIGN },
	{ "B10", "the DID of an extension range is not in it", C_ENFORCE, .teams = "+441235999000",
	    .act = ACT_NOTHING, .reason = RSN_EXTERNAL, .number = "+441235999000" },
	{ "B10", "not a number at all: external, never assigned", C_ENFORCE, ABINGDON_1,
	    .teams = "garbage", .act = ACT_NOTHING, .reason = RSN_EXTERNAL, .number = "garbage" },
	{ "B10", "external before, Teams not read: asks Teams", C_ENFORCE, ABINGDON_1,
	    .state = US_EXTERNAL, .act = ACT_CHECK, .reason = RSN_EXTERNAL,
	    .cand = { "dr-abingdon", "dr-abingdon-2", "oc-uk" } },
	{ "B10", "external before, unmatched: asks Teams, no candidates", C_ENFORCE,
	    .state = US_EXTERNAL, .city = "Paris", .act = ACT_CHECK, .reason = RSN_EXTERNAL },
	{ "B10", "external before, Teams shows none now: assigned", C_ENFORCE, ABINGDON_1,
	    .state = US_EXTERNAL, .teams = "", .act = ACT_ASSIGN, .reason = RSN_NEW,
	    .cand = { "dr-abingdon", "dr-abingdon-2", "oc-uk" } },
	{ "B10", "external before, still external", C_ENFORCE, .state = US_EXTERNAL,
	    .teams = FOREIGN, .act = ACT_NOTHING, .reason = RSN_EXTERNAL, .number = FOREIGN },
	{ "B10", "holds a number, Teams shows another: never a second", C_ENFORCE, ABINGDON_1,
	    .state = US_ASSIGNED, .held = OURS, .teams = "+441235000124", .act = ACT_NOTHING,
	    .reason = RSN_HAS_NUMBER, .number = OURS },
	{ "B10", "holds a number, Teams shows none: nothing here (drift is B16)", C_ENFORCE,
	    .state = US_ASSIGNED, .held = OURS, .teams = "", .act = ACT_NOTHING,
	    .reason = RSN_HAS_NUMBER, .number = OURS },
	{ "B10", "a number of ours while waiting for a retry: adopted", C_ENFORCE,
	    .state = US_WAITING, .retry_at = NOW + 600, .teams = OURS, .act = ACT_ADOPT,
	    .reason = RSN_HAS_NUMBER, .number = OURS },
	{ "B10", "dry-run: decided like enforce", C_DRY, .teams = OURS, .act = ACT_ADOPT,
	    .reason = RSN_HAS_NUMBER, .number = OURS },
	/* B11: administrators */
	{ "B11", "held by the administrator: nothing", C_ENFORCE, ABINGDON_1, .state = US_HELD,
	    .act = ACT_NOTHING, .reason = RSN_HELD },
	{ "B11", "held, Teams shows none: still nothing", C_ENFORCE, ABINGDON_1, .state = US_HELD,
	    .teams = "", .act = ACT_NOTHING, .reason = RSN_HELD },
	{ "B11", "held, Teams shows a number of ours: not adopted", C_ENFORCE, .state = US_HELD,
	    .teams = OURS, .act = ACT_NOTHING, .reason = RSN_HELD },
	{ "B11", "held, moved: still nothing", C_ENFORCE, .state = US_HELD,
	    .flags = USER_F_MOVED | USER_F_DUE, .city = "Didcot", .act = ACT_NOTHING,
	    .reason = RSN_HELD },
	{ "B11", "held and unlicensed: stays held", C_ENFORCE, .state = US_HELD, .unlicensed = 1,
	    .flags = USER_F_DUE, .act = ACT_NOTHING, .reason = RSN_HELD },
	{ "B11", "held and disabled: stays held", C_ENFORCE, .state = US_HELD, .disabled = 1,
	    .flags = USER_F_DUE, .act = ACT_NOTHING, .reason = RSN_HELD },
	{ "B11", "held and deleted: forgotten", C_ENFORCE, .state = US_GONE, .act = ACT_FORGET,
	    .reason = RSN_DELETED },
	{ "B11", "held, a number still recorded (unassign cut short): released", C_ENFORCE,
	    .state = US_HELD, .flags = USER_F_UNASSIGN, .held = OURS, .act = ACT_RELEASE,
	    .reason = RSN_ADMIN, .number = OURS },
	{ "B11", "held, a number still recorded, mode off: released (manual)", C_OFF,
	    .state = US_HELD, .flags = USER_F_UNASSIGN, .held = OURS, .act = ACT_RELEASE,
	    .reason = RSN_ADMIN, .number = OURS },
	{ "B11", "held, a number still recorded, policy keeps numbers: released", C_KEEP,
	    .state = US_HELD, .flags = USER_F_UNASSIGN, .unlicensed = 1, .held = OURS,
	    .act = ACT_RELEASE, .reason = RSN_ADMIN, .number = OURS },
	{ "B11", "held with a number, no unassign pending (an assign cut short): has it", C_ENFORCE,
	    .state = US_HELD, .held = OURS, .act = ACT_NOTHING, .reason = RSN_HAS_NUMBER,
	    .number = OURS },
	{ "B11", "held, the number's assignment unsettled: settled first", C_ENFORCE,
	    .state = US_HELD, .held = OURS, .held_pending = 1, .act = ACT_NOTHING,
	    .reason = RSN_PENDING, .number = OURS },
	{ "B11", "held, mode off: still held", C_OFF, .state = US_HELD, .act = ACT_NOTHING,
	    .reason = RSN_HELD },
	{ "B11", "unsettled assignment: settled from Teams first", C_ENFORCE, ABINGDON_1,
	    .state = US_ASSIGNING, .held = OURS, .held_pending = 1, .act = ACT_NOTHING,
	    .reason = RSN_PENDING, .number = OURS },
	{ "B11", "unsettled and moved: settled first", C_ENFORCE, .state = US_ASSIGNING,
	    .flags = USER_F_MOVED, .held = OURS, .held_pending = 1, .act = ACT_NOTHING,
	    .reason = RSN_PENDING, .number = OURS },
	{ "B11", "unsettled and disabled: settled first", C_RELDIS, .disabled = 1, .held = OURS,
	    .held_pending = 1, .act = ACT_NOTHING, .reason = RSN_PENDING, .number = OURS },
	{ "B11", "unsettled, Teams shows another: settled first", C_ENFORCE, .held = OURS,
	    .held_pending = 1, .teams = FOREIGN, .act = ACT_NOTHING, .reason = RSN_PENDING,
	    .number = OURS },
	{ "B11", "unsettled, mode off: settled first", C_OFF, .held = OURS, .held_pending = 1,
	    .act = ACT_NOTHING, .reason = RSN_PENDING, .number = OURS },
	{ "B11", "a change of number cut short: settled from Teams", C_ENFORCE, ABINGDON_1,
	    .state = US_ASSIGNED, .held = OURS, .change_new = "+441235000777", .act = ACT_SETTLE,
	    .reason = RSN_CHANGE, .number = "+441235000777" },
	{ "B11", "a change cut short, the old number unsettled: the change first", C_ENFORCE,
	    .held = OURS, .held_pending = 1, .change_new = "+441235000777", .act = ACT_SETTLE,
	    .reason = RSN_CHANGE, .number = "+441235000777" },
	{ "B11", "a change cut short, deleted meanwhile: the change first", C_ENFORCE,
	    .state = US_GONE, .held = OURS, .change_new = "+441235000777", .act = ACT_SETTLE,
	    .reason = RSN_CHANGE, .number = "+441235000777" },
	{ "B11", "a change cut short, mode off: settled (manual)", C_OFF, .held = OURS,
	    .change_new = "+441235000777", .act = ACT_SETTLE, .reason = RSN_CHANGE,
	    .number = "+441235000777" },
	/* B14: refused for now, retried later */
	{ "B14", "retry in the future: wait", C_ENFORCE, ABINGDON_1, .state = US_WAITING,
	    .retry_at = NOW + 600, .act = ACT_WAIT, .reason = RSN_RETRY, .until = NOW + 600 },
	{ "B14", "retry in the future, Teams shows none: wait", C_ENFORCE, ABINGDON_1,
	    .state = US_WAITING, .retry_at = NOW + 1, .teams = "", .act = ACT_WAIT,
	    .reason = RSN_RETRY, .until = NOW + 1 },
	{ "B14", "retry due now: asked again", C_ENFORCE, ABINGDON_1, .state = US_WAITING,
	    .retry_at = NOW, .act = ACT_CHECK, .reason = RSN_NEW,
	    .cand = { "dr-abingdon", "dr-abingdon-2", "oc-uk" } },
	{ "B14", "retry past, Teams shows none: assigned", C_ENFORCE, ABINGDON_1,
	    .state = US_WAITING, .retry_at = NOW - 3600, .teams = "", .act = ACT_ASSIGN,
	    .reason = RSN_NEW, .cand = { "dr-abingdon", "dr-abingdon-2", "oc-uk" } },
	{ "B14", "retry in the future, but unmatched now: waits all the same", C_ENFORCE,
	    .city = "Paris", .state = US_WAITING, .retry_at = NOW + 60, .act = ACT_WAIT,
	    .reason = RSN_RETRY, .until = NOW + 60 },
	{ "B14", "retry pending, holds a number meanwhile: nothing", C_ENFORCE, .state = US_WAITING,
	    .retry_at = NOW + 600, .held = OURS, .act = ACT_NOTHING, .reason = RSN_HAS_NUMBER,
	    .number = OURS },
	{ "B14", "dry-run: decided like enforce", C_DRY, .state = US_WAITING, .retry_at = NOW + 600,
	    .act = ACT_WAIT, .reason = RSN_RETRY, .until = NOW + 600 },
	/* B15: the modes */
	{ "B15", "mode off: no number for a new user", C_OFF, ABINGDON_1, .teams = "",
	    .act = ACT_NOTHING, .reason = RSN_MODE_OFF },
	{ "B15", "mode off, Teams not read: nothing", C_OFF, ABINGDON_1, .act = ACT_NOTHING,
	    .reason = RSN_MODE_OFF },
	{ "B15", "mode off: no adoption", C_OFF, .teams = OURS, .act = ACT_NOTHING,
	    .reason = RSN_MODE_OFF },
	{ "B15", "mode off: not counted unmatched", C_OFF, .city = "Paris", .act = ACT_NOTHING,
	    .reason = RSN_MODE_OFF },
	{ "B15", "mode off: no wait", C_OFF, .state = US_WAITING, .retry_at = NOW + 600,
	    .act = ACT_NOTHING, .reason = RSN_MODE_OFF },
	{ "B15", "mode off: a number kept is still nothing", C_OFF, .state = US_ASSIGNED,
	    .held = OURS, .act = ACT_NOTHING, .reason = RSN_HAS_NUMBER, .number = OURS },
	{ "B15", "mode off: a deleted user without a number is forgotten", C_OFF, .state = US_GONE,
	    .act = ACT_FORGET, .reason = RSN_DELETED },
	{ "B15", "dry-run: a new user decided like enforce", C_DRY, ABINGDON_1, .act = ACT_CHECK,
	    .reason = RSN_NEW, .cand = { "dr-abingdon", "dr-abingdon-2", "oc-uk" } },
	{ "B15", "dry-run, Teams shows none: assign", C_DRY, ABINGDON_1, .teams = "",
	    .act = ACT_ASSIGN, .reason = RSN_NEW,
	    .cand = { "dr-abingdon", "dr-abingdon-2", "oc-uk" } },
	{ "B15", "dry-run: unmatched", C_DRY, .city = "Paris", .act = ACT_UNMATCHED,
	    .reason = RSN_NO_MATCH },
};

#define N_ROWS ((int)(sizeof(rows) / sizeof(rows[0])))

static void
user_of_row(const struct row *w, struct user *u)
{
	user_init(u, "u1");
	snprintf(u->upn, sizeof(u->upn), "alice@contoso.com");
	u->enabled = w->disabled ? 0 : 1;
	u->teams_phone = w->unlicensed ? 0 : 1;
	u->calling_plan = w->calling_plan ? 1 : 0;
	u->state = (uint8_t)w->state;
	u->flags = w->flags;
	u->retry_at = w->retry_at;
	u->backoff = w->retry_at ? 60 : 0;
	if (w->change_new) {
		snprintf(u->change_old, sizeof(u->change_old), "%s", w->held ? w->held : "");
		snprintf(u->change_new, sizeof(u->change_new), "%s", w->change_new);
	}
	set_attr(u, RA_CITY, w->city);
	set_attr(u, RA_OFFICE, w->office);
	set_attr(u, RA_USAGE_LOCATION, w->usage);
	set_attr(u, RA_DEPARTMENT, w->dept);
	set_attr(u, RA_COMPANY, w->company);
}

START_TEST(decision_table)
{
	const struct row *w = &rows[_i];
	struct config *cfg = load_variant(w->cfg);
	struct inv_user h;
	struct decision d;
	struct user u;
	size_t n = 0;

	user_of_row(w, &u);
	if (w->held)
		h = held_number(w->held, w->held_pending);
	decide(cfg, &u, w->held ? &h : NULL, w->teams, NOW, &d);
	ck_assert_msg(d.act == w->act && d.reason == w->reason,
	    "%s %s: got %s/%s (%d/%d), want %s/%s (%d/%d)", w->b, w->what, action_name(d.act),
	    reason_name(d.reason), d.act, d.reason, action_name(w->act), reason_name(w->reason),
	    w->act, w->reason);
	if (w->number) {
		ck_assert_msg(d.number != NULL, "%s %s: no number", w->b, w->what);
		ck_assert_str_eq(d.number, w->number);
	} else {
		ck_assert_msg(d.number == NULL, "%s %s: number %s", w->b, w->what, d.number);
	}
	if (w->act == ACT_WAIT)
		ck_assert_int_eq((long long)d.until, (long long)w->until);
	while (n < 8 && w->cand[n])
		n++;
	ck_assert_msg(d.n_cand == n, "%s %s: %zu candidates, want %zu", w->b, w->what, d.n_cand, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(strcmp(d.cand[i]->name, w->cand[i]) == 0,
		    "%s %s: candidate %zu is %s, want %s", w->b, w->what, i, d.cand[i]->name,
		    w->cand[i]);
	for (size_t i = n; i < DECIDE_MAX_CAND; i++)
		ck_assert_ptr_null(d.cand[i]);
	user_clear(&u);
	config_free(cfg);
}
END_TEST

/* The number a decision points at is the inventory's (or Teams'), never a copy that dies. */
START_TEST(decision_number_points_at_inputs)
{
	struct config *cfg = load_variant(C_ENFORCE);
	struct inv_user h = held_number(OURS, 0);
	char teams[] = FOREIGN;
	struct decision d;
	struct user u;

	user_init(&u, "u1");
	u.teams_phone = 1;
	u.state = US_GONE;
	decide(cfg, &u, &h, NULL, NOW, &d);
	ck_assert_ptr_eq(d.number, h.number);
	u.state = US_NEW;
	decide(cfg, &u, NULL, teams, NOW, &d);
	ck_assert_ptr_eq(d.number, teams);
	user_clear(&u);
	config_free(cfg);
}
END_TEST

/* A decision starts from nothing: what an earlier call left in out does not leak. */
START_TEST(decision_is_cleared_first)
{
	struct config *cfg = load_variant(C_ENFORCE);
	struct decision d;
	struct user u;

	user_init(&u, "u1");
	u.teams_phone = 1;
	set_attr(&u, RA_COMPANY, "Tie");
	memset(&d, 0x5a, sizeof(d));
	decide(cfg, &u, NULL, "", NOW, &d);
	ck_assert_int_eq(d.act, ACT_ASSIGN);
	ck_assert_uint_eq(d.n_cand, 3);
	ck_assert_int_eq((long long)d.until, 0);
	ck_assert_ptr_null(d.number);
	ck_assert_ptr_null(d.cand[3]);
	u.state = US_WAITING;
	u.retry_at = NOW + 5;
	decide(cfg, &u, NULL, NULL, NOW, &d);
	ck_assert_int_eq(d.act, ACT_WAIT);
	ck_assert_uint_eq(d.n_cand, 0);
	ck_assert_ptr_null(d.cand[0]);
	user_clear(&u);
	config_free(cfg);
}
END_TEST

/* ---- range types ----------------------------------------------------------- */

START_TEST(range_types_suit_licence_class)
{
	/* B2: a calling plan user gets calling-plan numbers, anyone else the other two */
	ck_assert_int_eq(range_type_suits(RT_CALLING_PLAN, 1), 1);
	ck_assert_int_eq(range_type_suits(RT_CALLING_PLAN, 0), 0);
	ck_assert_int_eq(range_type_suits(RT_OPERATOR_CONNECT, 0), 1);
	ck_assert_int_eq(range_type_suits(RT_OPERATOR_CONNECT, 1), 0);
	ck_assert_int_eq(range_type_suits(RT_DIRECT_ROUTING, 0), 1);
	ck_assert_int_eq(range_type_suits(RT_DIRECT_ROUTING, 1), 0);
	/* any non-zero is a calling plan */
	ck_assert_int_eq(range_type_suits(RT_CALLING_PLAN, 2), 1);
	ck_assert_int_eq(range_type_suits(RT_DIRECT_ROUTING, -1), 0);
	/* a type the table does not know suits nobody */
	ck_assert_int_eq(range_type_suits((enum range_type)42, 0), 0);
	ck_assert_int_eq(range_type_suits((enum range_type)42, 1), 0);
}
END_TEST

START_TEST(range_types_in_graph)
{
	ck_assert_int_eq(range_type_graph(RT_CALLING_PLAN), TNT_CALLING_PLAN);
	ck_assert_int_eq(range_type_graph(RT_OPERATOR_CONNECT), TNT_OPERATOR_CONNECT);
	ck_assert_int_eq(range_type_graph(RT_DIRECT_ROUTING), TNT_DIRECT_ROUTING);
	ck_assert_int_eq(range_type_graph((enum range_type)42), TNT_DIRECT_ROUTING);
	ck_assert_str_eq(teams_type_name(range_type_graph(RT_CALLING_PLAN)), "callingPlan");
	ck_assert_str_eq(teams_type_name(range_type_graph(RT_OPERATOR_CONNECT)), "operatorConnect");
	ck_assert_str_eq(teams_type_name(range_type_graph(RT_DIRECT_ROUTING)), "directRouting");
}
END_TEST

/* ---- range_of_number -------------------------------------------------------- */

static const struct {
	const char *number, *range; /* range NULL: in none */
} numbers[] = {
	{ "+441235000000", "dr-abingdon" }, /* first (and reserved) */
	{ "+441235000999", "dr-abingdon" }, /* last */
	{ "+441235000500", "dr-abingdon" },
	{ "+441235001000", "dr-abingdon-2" },
	{ "+441235001999", "dr-abingdon-2" },
	{ "+441235002000", NULL },	   /* one past */
	{ "+441234999999", NULL },	   /* one before */
	{ "441235000123", "dr-abingdon" }, /* written otherwise */
	{ "0044 1235 000123", "dr-abingdon" },
	{ "tel:+44-1235-000-123", "dr-abingdon" },
	{ "+44 (0)1235 000123", "dr-abingdon" },
	{ "+441235999000;ext=100", "ext-hq" },
	{ "+441235999000;ext=199", "ext-hq" },
	{ "tel:+441235999000;ext=150", "ext-hq" },
	{ "+441235999000;ext=200", NULL },
	{ "+441235999000;ext=099", NULL },
	{ "+441235999000;ext=10", NULL }, /* another width */
	{ "+441235999000", NULL },	  /* the DID itself */
	{ "+4412350001230", NULL },	  /* one digit more */
	{ "+44123500012", NULL },	  /* one digit less */
	{ "+442071230499", "cp-london" },
	{ "+442071240000", "cp-gb" },
	{ "+441632960999", "oc-uk" },
	{ "+441865300050", "late-first" },
	{ "+4930123456", NULL },
	{ "", NULL },
	{ "+", NULL },
	{ "not a number", NULL },
	{ "+441235000123x", NULL },
};

START_TEST(range_of_number_table)
{
	struct config *cfg = load_variant(C_ENFORCE);
	const struct cfg_range *r = range_of_number(cfg, numbers[_i].number);

	if (numbers[_i].range) {
		ck_assert_msg(
		    r != NULL, "%s: in no range, want %s", numbers[_i].number, numbers[_i].range);
		ck_assert_str_eq(r->name, numbers[_i].range);
	} else {
		ck_assert_msg(
		    r == NULL, "%s: in %s, want none", numbers[_i].number, r ? r->name : "");
	}
	config_free(cfg);
}
END_TEST

START_TEST(range_of_number_null_and_empty_config)
{
	struct config *cfg = load_variant(C_ENFORCE);
	struct config *empty = load_text(TENANT);

	ck_assert_ptr_null(range_of_number(cfg, NULL));
	ck_assert_ptr_null(range_of_number(empty, OURS));
	config_free(empty);
	config_free(cfg);
}
END_TEST

/* ---- decide_candidates ------------------------------------------------------ */

START_TEST(candidates_max_keeps_the_best)
{
	struct config *cfg = load_variant(C_ENFORCE);
	const struct cfg_range *out[4] = { NULL, NULL, NULL, NULL };
	struct user u;

	user_init(&u, "u1");
	set_attr(&u, RA_CITY, "Abingdon");
	set_attr(&u, RA_OFFICE, "Office 1");
	set_attr(&u, RA_USAGE_LOCATION, "GB");
	set_attr(&u, RA_DEPARTMENT, "Sales");
	set_attr(&u, RA_COMPANY, "Tie");
	ck_assert_uint_eq(decide_candidates(cfg, &u, out, 0), 0);
	ck_assert_ptr_null(out[0]);
	ck_assert_uint_eq(decide_candidates(cfg, &u, out, 1), 1);
	ck_assert_str_eq(out[0]->name, "late-first"); /* last in config, lowest priority */
	ck_assert_uint_eq(decide_candidates(cfg, &u, out, 3), 3);
	ck_assert_str_eq(out[0]->name, "late-first");
	ck_assert_str_eq(out[1]->name, "dr-abingdon");
	ck_assert_str_eq(out[2]->name, "dr-abingdon-2");
	ck_assert_ptr_null(out[3]);
	u.calling_plan = 1;
	ck_assert_uint_eq(decide_candidates(cfg, &u, out, 4), 1);
	ck_assert_str_eq(out[0]->name, "cp-gb");
	user_clear(&u);
	config_free(cfg);
}
END_TEST

/* A range without a rule is for every user of its type. */
START_TEST(candidates_range_without_rule)
{
	struct config *cfg = load_text(TENANT
	    "ranges = (\n"
	    " { name = \"anyone\"; type = \"direct-routing\"; first = \"+441235000000\";\n"
	    "   last = \"+441235000999\"; },\n"
	    " { name = \"cp-anyone\"; type = \"calling-plan\"; first = \"+441235001000\";\n"
	    "   last = \"+441235001999\"; priority = 1; },\n"
	    " { name = \"gb\"; type = \"operator-connect\"; first = \"+441235002000\";\n"
	    "   last = \"+441235002999\"; match = \"usage_location = 'GB'\"; priority = 100; }\n"
	    ");\n");
	const struct cfg_range *out[4];
	struct user u;

	user_init(&u, "u1");
	ck_assert_uint_eq(decide_candidates(cfg, &u, out, 4), 1);
	ck_assert_str_eq(out[0]->name, "anyone");
	set_attr(&u, RA_USAGE_LOCATION, "gb");
	/* equal priority (the default is 100): config order */
	ck_assert_uint_eq(decide_candidates(cfg, &u, out, 4), 2);
	ck_assert_str_eq(out[0]->name, "anyone");
	ck_assert_str_eq(out[1]->name, "gb");
	u.calling_plan = 1;
	ck_assert_uint_eq(decide_candidates(cfg, &u, out, 4), 1);
	ck_assert_str_eq(out[0]->name, "cp-anyone");
	user_clear(&u);
	config_free(cfg);
}
END_TEST

/*
 * B3 with more matching ranges than a decision holds: the ones tried are the
 * DECIDE_MAX_CAND lowest priorities, not the first DECIDE_MAX_CAND in the file.
 */
#define MANY 70

static struct config *
load_many(void)
{
	static char text[32768];
	size_t used = 0;

	used += (size_t)snprintf(text + used, sizeof(text) - used, "%sranges = (\n", TENANT);
	for (int i = 0; i < MANY; i++)
		used += (size_t)snprintf(text + used, sizeof(text) - used,
		    " { name = \"r%02d\"; type = \"direct-routing\"; first = \"+4411800%02d000\";"
		    " last = \"+4411800%02d999\"; match = \"company = 'Many'\"; priority = %d; "
		    "}%s\n",
		    i, i, i,
		    i == MANY - 1	? 1
			: i == MANY - 2 ? 2
					: 100,
		    i == MANY - 1 ? "" : ",");
	snprintf(text + used, sizeof(text) - used, ");\n");
	return load_text(text);
}

START_TEST(candidates_beyond_the_limit_by_priority)
{
	struct config *cfg = load_many();
	const struct cfg_range *out[DECIDE_MAX_CAND];
	struct decision d;
	struct user u;
	size_t n;

	user_init(&u, "u1");
	u.teams_phone = 1;
	set_attr(&u, RA_COMPANY, "many");
	n = decide_candidates(cfg, &u, out, DECIDE_MAX_CAND);
	ck_assert_uint_eq(n, DECIDE_MAX_CAND);
	ck_assert_str_eq(out[0]->name, "r69");
	ck_assert_str_eq(out[1]->name, "r68");
	/* then the priority-100 ranges in config order */
	for (size_t i = 2; i < n; i++) {
		char want[8];
		snprintf(want, sizeof(want), "r%02zu", i - 2);
		ck_assert_str_eq(out[i]->name, want);
	}
	decide(cfg, &u, NULL, "", NOW, &d);
	ck_assert_int_eq(d.act, ACT_ASSIGN);
	ck_assert_uint_eq(d.n_cand, DECIDE_MAX_CAND);
	ck_assert_str_eq(d.cand[0]->name, "r69");
	ck_assert_str_eq(d.cand[1]->name, "r68");
	ck_assert_str_eq(d.cand[DECIDE_MAX_CAND - 1]->name, "r61");
	user_clear(&u);
	config_free(cfg);
}
END_TEST

/* ---- names -------------------------------------------------------------------- */

START_TEST(action_and_reason_names)
{
	static const char *const acts[] = { [ACT_NOTHING] = "none",
		[ACT_ASSIGN] = "assign",
		[ACT_CHECK] = "assign",
		[ACT_ADOPT] = "adopt",
		[ACT_RELEASE] = "release",
		[ACT_RETAIN] = "retain",
		[ACT_WAIT] = "wait",
		[ACT_UNMATCHED] = "unmatched",
		[ACT_FORGET] = "forget",
		[ACT_SETTLE] = "settle" };
	static const char *const reasons[] = { [RSN_NONE] = "",
		[RSN_DELETED] = "deleted",
		[RSN_UNLICENSED] = "unlicensed",
		[RSN_DISABLED] = "disabled",
		[RSN_MOVED] = "moved",
		[RSN_HAS_NUMBER] = "has-number",
		[RSN_PENDING] = "pending",
		[RSN_HELD] = "held-by-administrator",
		[RSN_ADMIN] = "administrator",
		[RSN_CHANGE] = "change-of-number",
		[RSN_MODE_OFF] = "mode-off",
		[RSN_POLICY] = "policy",
		[RSN_RETRY] = "retry",
		[RSN_NO_MATCH] = "no-match",
		[RSN_EXTERNAL] = "number-outside-ranges",
		[RSN_NEW] = "new" };

	for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++)
		ck_assert_str_eq(action_name((enum action)i), acts[i]);
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		ck_assert_str_eq(reason_name((enum reason)i), reasons[i]);
	ck_assert_str_eq(action_name((enum action)99), "?");
	ck_assert_str_eq(reason_name((enum reason)99), "?");
	/* syslog's reason= values of docs/interfaces.md, event lines */
	ck_assert_str_eq(reason_name(RSN_DELETED), "deleted");
	ck_assert_str_eq(reason_name(RSN_DISABLED), "disabled");
	ck_assert_str_eq(reason_name(RSN_MOVED), "moved");
}
END_TEST

/* ---- the sweep: every combination, the rules no decision may break --------- */

static int
same_decision(const struct decision *a, const struct decision *b)
{
	if (a->act != b->act || a->reason != b->reason || a->until != b->until
	    || a->n_cand != b->n_cand || (a->number == NULL) != (b->number == NULL)
	    || (a->number && strcmp(a->number, b->number) != 0))
		return 0;
	for (size_t i = 0; i < a->n_cand; i++)
		if (strcmp(a->cand[i]->name, b->cand[i]->name) != 0)
			return 0;
	return 1;
}

/*
 * The rules every decision keeps, whatever the inputs. Returns the rule broken,
 * or NULL. (Plain tests, not ck_assert: Check records every assertion passed,
 * and the sweep makes millions.)
 */
#define RULE(cond, what)                                                                           \
	do {                                                                                       \
		if (!(cond))                                                                       \
			return what;                                                               \
	} while (0)

static const char *
broken_rule(const struct config *cfg, const struct user *u, const struct inv_user *h,
    const char *teams, const struct decision *d)
{
	int automatic = cfg->sync.mode != SYNC_OFF;
	const struct cfg_range *want[DECIDE_MAX_CAND];
	struct rule_attrs a;

	user_attrs(u, &a);
	if (u->change_new[0]) {
		RULE(d->act == ACT_SETTLE && d->reason == RSN_CHANGE && d->number == u->change_new,
		    "B11: a change of number in flight is settled before anything else");
		return NULL;
	}
	if (h && h->state == INV_PENDING)
		RULE(d->act == ACT_NOTHING && d->reason == RSN_PENDING,
		    "an unsettled assignment is settled before anything else");
	switch (d->act) {
	case ACT_ASSIGN:
		RULE(teams && !*teams, "B10: assign only once Teams was read and shows none");
		/* fall through */
	case ACT_CHECK:
		RULE(d->act == ACT_ASSIGN || !teams, "check only when Teams was not read");
		RULE(!h, "B10: never a second number");
		RULE(automatic, "B15: no assignment in mode off");
		RULE(u->teams_phone && u->enabled,
		    "B1/B6/B8: assign only to licensed, enabled users");
		RULE(u->state != US_GONE && u->state != US_HELD,
		    "B7/B11: no number for gone or held");
		RULE(d->n_cand > 0 || (d->act == ACT_CHECK && d->reason == RSN_EXTERNAL),
		    "B5: an assignment needs candidates");
		RULE(d->n_cand == decide_candidates(cfg, u, want, DECIDE_MAX_CAND),
		    "the candidates are decide_candidates'");
		for (size_t i = 0; i < d->n_cand; i++) {
			RULE(d->cand[i] == want[i], "the candidates are decide_candidates'");
			RULE(range_type_suits(d->cand[i]->type, u->calling_plan),
			    "B2: candidates suit the licence class");
			RULE(!d->cand[i]->match || rule_eval(d->cand[i]->match, &a),
			    "B4: candidates' rules hold");
			RULE(!i || d->cand[i - 1]->priority <= d->cand[i]->priority,
			    "B3: candidates by priority");
		}
		break;
	case ACT_ADOPT:
		RULE(teams && *teams && range_of_number(cfg, teams), "B10: adopt a number of ours");
		RULE(!h && automatic && u->state != US_HELD, "B10/B11/B15: adopt");
		RULE(d->number == teams, "B10: adopt the number Teams shows");
		break;
	case ACT_RELEASE:
		RULE(h && h->state == INV_ASSIGNED, "release a number held");
		RULE(d->number == h->number, "release the inventory's number");
		if (d->reason == RSN_ADMIN) {
			RULE(u->state == US_HELD, "B11: an administrator's unassign carried out");
			break;
		}
		RULE(automatic, "B15: no automatic release in mode off");
		RULE((d->reason == RSN_DELETED && u->state == US_GONE
			 && cfg->policy.release_on_delete)
			|| (d->reason == RSN_UNLICENSED && !u->teams_phone
			    && cfg->policy.release_on_unlicense)
			|| (d->reason == RSN_DISABLED && !u->enabled
			    && cfg->policy.release_on_disable),
		    "B6/B7/B8: release only as the policy says");
		break;
	case ACT_RETAIN:
		RULE(h && h->state == INV_ASSIGNED, "retain a number held");
		RULE((d->reason == RSN_DISABLED && !u->enabled)
			|| (d->reason == RSN_MOVED && (u->flags & USER_F_MOVED)),
		    "B6/B9: retain");
		break;
	case ACT_WAIT:
		RULE(automatic && !h && u->retry_at > NOW && d->until == u->retry_at, "B14: wait");
		break;
	case ACT_UNMATCHED:
		RULE(automatic && !h && (!teams || !*teams), "B5: unmatched");
		RULE(decide_candidates(cfg, u, want, DECIDE_MAX_CAND) == 0, "B5: no candidate");
		break;
	case ACT_FORGET:
		RULE(u->state == US_GONE && !h, "B7: forget only a gone user without a number");
		break;
	case ACT_SETTLE:
		RULE(0, "settle without a change of number in flight");
		break;
	case ACT_NOTHING:
		break;
	}
	RULE(automatic || d->act == ACT_NOTHING || d->act == ACT_RETAIN || d->act == ACT_FORGET
		|| (d->act == ACT_RELEASE && d->reason == RSN_ADMIN),
	    "B15: mode off assigns, adopts and releases nothing of its own");
	RULE(!teams || !*teams || (d->act != ACT_ASSIGN && d->act != ACT_CHECK),
	    "B10: a number shown in Teams is never replaced");
	RULE(u->enabled || !u->teams_phone || !h || u->state == US_GONE || u->state == US_HELD
		|| cfg->policy.release_on_disable || d->act != ACT_RELEASE,
	    "B6: a disabled user keeps the number");
	RULE(u->state != US_HELD || h || (d->act == ACT_NOTHING && d->reason == RSN_HELD),
	    "B11: a held user gets nothing from the cycle");
	RULE(u->state != US_HELD || !h || h->state != INV_ASSIGNED || !(u->flags & USER_F_UNASSIGN)
		|| (d->act == ACT_RELEASE && d->reason == RSN_ADMIN),
	    "B11: a held user's unassign cut short is carried out");
	RULE(!h || d->act == ACT_ADOPT || d->number == h->number,
	    "the number is the inventory's when there is one");
	for (size_t i = d->n_cand; i < DECIDE_MAX_CAND; i++)
		RULE(d->cand[i] == NULL, "no candidate beyond n_cand");
	return NULL;
}

struct sweep_case {
	enum cfg_variant v;
	int state, enabled, teams_phone, calling_plan, who, change;
	uint8_t flags;
	int64_t retry_at;
	const struct inv_user *held;
	const char *teams;
};

static void
sweep_fail(const struct sweep_case *c, const struct decision *d, const char *what)
{
	ck_abort_msg("config %d, state %s, flags %u, enabled %d, teams_phone %d, calling_plan %d, "
		     "held %s, teams %s, retry_at now%+lld, %s%s: decided %s/%s: %s",
	    (int)c->v, user_state_name((enum user_state)c->state), c->flags, c->enabled,
	    c->teams_phone, c->calling_plan,
	    !c->held				? "none"
		: c->held->state == INV_PENDING ? "pending"
						: "assigned",
	    c->teams ? c->teams : "(not read)", c->retry_at ? (long long)(c->retry_at - NOW) : 0LL,
	    c->who ? "matches" : "unmatched", c->change ? ", a change of number in flight" : "",
	    action_name(d->act), reason_name(d->reason), what);
}

static void
sweep_one(struct config *const cfg[C__MAX], struct user *u, const struct sweep_case *c)
{
	struct decision d, again;
	const char *broken;

	u->state = (uint8_t)c->state;
	u->flags = c->flags;
	u->enabled = (int8_t)c->enabled;
	u->teams_phone = (uint8_t)c->teams_phone;
	u->calling_plan = (uint8_t)c->calling_plan;
	u->retry_at = c->retry_at;
	snprintf(u->change_old, sizeof(u->change_old), "%s", c->change ? OURS : "");
	snprintf(u->change_new, sizeof(u->change_new), "%s", c->change ? "+441235000777" : "");
	decide(cfg[c->v], u, c->held, c->teams, NOW, &d);
	if ((broken = broken_rule(cfg[c->v], u, c->held, c->teams, &d)))
		sweep_fail(c, &d, broken);
	/* B15: dry-run decides exactly as enforce */
	if (c->v == C_ENFORCE || c->v == C_RELDIS) {
		decide(cfg[c->v == C_ENFORCE ? C_DRY : C_RELDIS_DRY], u, c->held, c->teams, NOW,
		    &again);
		if (!same_decision(&d, &again))
			sweep_fail(c, &d, "B15: dry-run decides otherwise than enforce");
	}
	/* pure: the same inputs, the same decision */
	decide(cfg[c->v], u, c->held, c->teams, NOW, &again);
	if (!same_decision(&d, &again))
		sweep_fail(c, &d, "not repeatable");
}

START_TEST(sweep_every_combination)
{
	static const enum cfg_variant vs[] = { C_ENFORCE, C_OFF, C_KEEP, C_RELDIS, C_RELDIS_OFF };
	static const uint8_t flag_sets[] = { 0, USER_F_DUE, USER_F_MOVED, USER_F_DUE | USER_F_MOVED,
		USER_F_UNASSIGN | USER_F_DUE };
	static const char *const teams_set[] = { NULL, "", OURS, FOREIGN };
	static const int64_t retries[] = { 0, NOW + 100, NOW, NOW - 100 };
	struct inv_user hs[2] = { held_number(OURS, 0), held_number(OURS, 1) };
	struct config *cfg[C__MAX];
	struct sweep_case c;
	long n = 0;

	for (int v = 0; v < C__MAX; v++)
		cfg[v] = load_variant((enum cfg_variant)v);
	for (int who = 0; who < 2; who++) {
		struct user u;

		user_init(&u, "u1");
		set_attr(&u, RA_CITY, who ? "Abingdon" : "Paris");
		set_attr(&u, RA_OFFICE, who ? "Office 1" : NULL);
		set_attr(&u, RA_USAGE_LOCATION, who ? "GB" : "FR");
		c.who = who;
		for (size_t vi = 0; vi < sizeof(vs) / sizeof(vs[0]); vi++)
			for (int st = 0; st < US__MAX; st++)
				for (size_t fl = 0; fl < sizeof(flag_sets); fl++)
					for (int bits = 0; bits < 8; bits++)
						for (int hi = -1; hi < 2; hi++)
							for (size_t ti = 0; ti < sizeof(teams_set)
								 / sizeof(teams_set[0]);
							     ti++)
								for (size_t ri = 0;
								     ri < sizeof(retries)
									 / sizeof(retries[0]);
								     ri++)
									for (int change = 0;
									     change < 2; change++) {
										c.change = change;
										c.v = vs[vi];
										c.state = st;
										c.flags
										    = flag_sets[fl];
										c.enabled
										    = bits & 1;
										c.teams_phone
										    = (bits >> 1)
										    & 1;
										c.calling_plan
										    = (bits >> 2)
										    & 1;
										c.held = hi < 0
										    ? NULL
										    : &hs[hi];
										c.teams
										    = teams_set[ti];
										c.retry_at
										    = retries[ri];
										sweep_one(
										    cfg, &u, &c);
										n++;
									}
		user_clear(&u);
	}
	ck_assert_int_eq(n,
	    5L * US__MAX * (long)(sizeof flag_sets / sizeof flag_sets[0]) * 8 * 3 * 4 * 4 * 2 * 2);
	for (int v = 0; v < C__MAX; v++)
		config_free(cfg[v]);
}
END_TEST

/* decide() keeps no state and does not touch its inputs. */
START_TEST(inputs_unchanged)
{
	struct config *cfg = load_variant(C_ENFORCE);
	struct inv_user h = held_number(OURS, 0), h0;
	struct user u, u0;
	struct decision d;

	user_init(&u, "u1");
	set_attr(&u, RA_CITY, "Abingdon");
	u.state = US_GONE;
	u.flags = USER_F_DUE | USER_F_MOVED;
	u.retry_at = NOW + 9;
	u0 = u;
	h0 = h;
	decide(cfg, &u, &h, "", NOW, &d);
	ck_assert_int_eq(memcmp(&u, &u0, sizeof(u)), 0);
	ck_assert_int_eq(memcmp(&h, &h0, sizeof(h)), 0);
	ck_assert_str_eq(u.attr[RA_CITY], "Abingdon");
	user_clear(&u);
	config_free(cfg);
}
END_TEST

static Suite *
decide_suite(void)
{
	Suite *s = suite_create("decide");
	TCase *table = tcase_create("table");
	TCase *ranges = tcase_create("ranges");
	TCase *sweep = tcase_create("sweep");

	tcase_add_loop_test(table, decision_table, 0, N_ROWS);
	tcase_add_test(table, decision_number_points_at_inputs);
	tcase_add_test(table, decision_is_cleared_first);
	tcase_add_test(table, inputs_unchanged);
	tcase_add_test(table, action_and_reason_names);
	suite_add_tcase(s, table);

	tcase_add_test(ranges, range_types_suit_licence_class);
	tcase_add_test(ranges, range_types_in_graph);
	tcase_add_loop_test(
	    ranges, range_of_number_table, 0, (int)(sizeof(numbers) / sizeof(numbers[0])));
	tcase_add_test(ranges, range_of_number_null_and_empty_config);
	tcase_add_test(ranges, candidates_max_keeps_the_best);
	tcase_add_test(ranges, candidates_range_without_rule);
	tcase_add_test(ranges, candidates_beyond_the_limit_by_priority);
	suite_add_tcase(s, ranges);

	tcase_add_test(sweep, sweep_every_combination);
	tcase_set_timeout(sweep, 120);
	suite_add_tcase(s, sweep);
	return s;
}

NP_CHECK_MAIN(decide_suite)
